//! Which `route.annotations` a gateway's author may put on its Ingress. The ingress
//! controller is shared by every tenant of the cluster, and many of its annotations program
//! it (nginx's `*-snippet`, `auth-url`, `server-alias`, ...): anyone allowed to create an
//! McpGateway must not gain that power. So the operator passes only annotations under the
//! prefixes a cluster admin trusts, and never a snippet.

use std::collections::BTreeMap;

use crate::render::streaming_annotations;

/// Annotation prefixes trusted by default: cert-manager and external-dns (they read the
/// Ingress, they do not configure the proxy), and the streaming timeouts and buffering the
/// operator itself sets, so a user can lengthen a timeout.
pub fn default_allowed_prefixes() -> Vec<String> {
    let mut prefixes: Vec<String> = [
        "cert-manager.io/",
        "acme.cert-manager.io/",
        "external-dns.alpha.kubernetes.io/",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    prefixes.extend(streaming_annotations().into_keys());
    prefixes
}

/// Whether a key is a configuration snippet of any controller (`configuration-snippet`,
/// `server-snippet`, `auth-snippet`, HAProxy's `backend-config-snippet`, Traefik's and
/// Kong's `snippets`): refused whatever the allow-list says.
pub fn is_snippet(key: &str) -> bool {
    key.to_ascii_lowercase().contains("snippet")
}

/// Refuses snippets and every annotation outside the allowed prefixes. The message names
/// the key, never the value.
pub fn check(annotations: &BTreeMap<String, String>, allowed: &[String]) -> Result<(), String> {
    for key in annotations.keys() {
        if is_snippet(key) {
            return Err(format!(
                "route.annotations must not contain configuration snippets ({key}): they inject configuration into the shared ingress controller"
            ));
        }
        if !allowed
            .iter()
            .any(|prefix| key.starts_with(prefix.as_str()))
        {
            return Err(format!(
                "route.annotations {key} is not allowed by this operator; it accepts annotations starting with {} (a cluster admin sets the chart value operator.allowedAnnotationPrefixes)",
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(keys: &[&str]) -> BTreeMap<String, String> {
        keys.iter().map(|k| (k.to_string(), "v".into())).collect()
    }

    #[test]
    fn the_default_list_takes_certificates_dns_and_timeouts() {
        let allowed = default_allowed_prefixes();
        let ok = annotations(&[
            "cert-manager.io/cluster-issuer",
            "external-dns.alpha.kubernetes.io/hostname",
            "nginx.ingress.kubernetes.io/proxy-read-timeout",
            "haproxy.org/timeout-tunnel",
        ]);
        assert_eq!(check(&ok, &allowed), Ok(()));
        let err = check(
            &annotations(&["nginx.ingress.kubernetes.io/auth-url"]),
            &allowed,
        )
        .unwrap_err();
        assert!(
            err.contains("nginx.ingress.kubernetes.io/auth-url"),
            "{err}"
        );
        assert!(err.contains("operator.allowedAnnotationPrefixes"), "{err}");
    }

    #[test]
    fn snippets_are_refused_even_when_their_prefix_is_trusted() {
        let allowed = vec![
            "nginx.ingress.kubernetes.io/".to_string(),
            "haproxy.org/".into(),
        ];
        for key in [
            "nginx.ingress.kubernetes.io/configuration-snippet",
            "nginx.ingress.kubernetes.io/server-snippet",
            "nginx.ingress.kubernetes.io/auth-snippet",
            "haproxy.org/backend-config-snippet",
            "nginx.ingress.kubernetes.io/Stream-Snippet",
        ] {
            let err = check(&annotations(&[key]), &allowed).unwrap_err();
            assert!(err.contains("snippets"), "{key}: {err}");
        }
        assert!(
            check(
                &annotations(&["nginx.ingress.kubernetes.io/ssl-redirect"]),
                &allowed
            )
            .is_ok()
        );
    }
}
