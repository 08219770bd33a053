//! Who owns a path on a shared host. Gateways in any namespace may name the same host; if
//! two claim the same path (the MCP, SSE and message endpoints, the metadata documents, the
//! facade's endpoints) the ingress controller would send one gateway's clients — and their
//! tokens — to the other. The older claim keeps the path (creationTimestamp, then
//! namespace/name); the newer gateway renders no Ingress rule for it and says why.
//! Pure: the caller hands in the gateways it knows.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use mcp_gateway_crds::v1alpha1::McpGateway;

use crate::render::public_paths;
use crate::{annotations, validate};

/// The routes one gateway would render.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    /// `namespace/name`.
    pub gateway: String,
    /// Claims are ordered by age; `None` (not yet stored) is the youngest.
    pub created: Option<Timestamp>,
    pub host: String,
    pub paths: Vec<String>,
}

impl Claim {
    /// What `gateway` claims, if it renders anything at all: a gateway that is being
    /// deleted, or whose spec the operator refuses, renders no Ingress and claims nothing.
    pub fn of(gateway: &McpGateway, allowed_annotations: &[String]) -> Option<Claim> {
        if gateway.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let plan = validate::validate(gateway).ok()?;
        annotations::check(&gateway.spec.route.annotations, allowed_annotations).ok()?;
        Some(Claim {
            gateway: format!(
                "{}/{}",
                gateway.namespace().unwrap_or_default(),
                gateway.name_any()
            ),
            created: gateway.metadata.creation_timestamp.as_ref().map(|t| t.0),
            host: gateway.spec.route.host.clone(),
            paths: public_paths(&plan),
        })
    }

    fn age_key(&self) -> (bool, Option<Timestamp>, &str) {
        (self.created.is_none(), self.created, &self.gateway)
    }

    fn is_older_than(&self, other: &Claim) -> bool {
        self.age_key() < other.age_key()
    }
}

/// The paths of `mine` that an older gateway on the same host claims, each with the oldest
/// such claimant (`namespace/name`).
pub fn contested<'a>(
    mine: &Claim,
    others: impl IntoIterator<Item = &'a Claim>,
) -> BTreeMap<String, String> {
    let mut lost: BTreeMap<String, &Claim> = BTreeMap::new();
    for other in others {
        if other.gateway == mine.gateway || other.host != mine.host || !other.is_older_than(mine) {
            continue;
        }
        for path in mine.paths.iter().filter(|p| other.paths.contains(p)) {
            let owner = lost.entry(path.clone()).or_insert(other);
            if other.is_older_than(owner) {
                *owner = other;
            }
        }
    }
    lost.into_iter()
        .map(|(path, owner)| (path, owner.gateway.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::{gateway, oidc_spec};

    fn claim(namespace: &str, name: &str, created: &str, spec: serde_json::Value) -> Claim {
        let mut gw = gateway(spec);
        gw.metadata.namespace = Some(namespace.into());
        gw.metadata.name = Some(name.into());
        gw.metadata.creation_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(created.parse().unwrap()),
        );
        Claim::of(&gw, &annotations::default_allowed_prefixes()).unwrap()
    }

    fn at_prefix(prefix: &str) -> serde_json::Value {
        let mut spec = oidc_spec();
        spec["route"]["pathPrefix"] = prefix.into();
        spec
    }

    #[test]
    fn the_older_gateway_keeps_a_contested_path() {
        let old = claim(
            "team-a",
            "weather",
            "2026-01-01T00:00:00Z",
            at_prefix("/weather"),
        );
        let new = claim(
            "team-b",
            "thief",
            "2026-02-01T00:00:00Z",
            at_prefix("/weather"),
        );
        let lost = contested(&new, [&old, &new]);
        assert_eq!(
            lost.len(),
            new.paths.len(),
            "every path is contested: {lost:?}"
        );
        assert!(lost.values().all(|owner| owner == "team-a/weather"));
        assert!(
            contested(&old, [&old, &new]).is_empty(),
            "the older one keeps all"
        );
    }

    #[test]
    fn same_age_is_decided_by_namespace_and_name_and_other_hosts_do_not_count() {
        let a = claim("a", "gw", "2026-01-01T00:00:00Z", at_prefix("/"));
        let b = claim("b", "gw", "2026-01-01T00:00:00Z", at_prefix("/"));
        assert!(contested(&a, [&b]).is_empty());
        assert!(contested(&b, [&a]).contains_key("/.well-known/oauth-protected-resource"));

        let mut elsewhere = at_prefix("/");
        elsewhere["route"]["host"] = "other.example.com".into();
        let c = claim("c", "gw", "2025-01-01T00:00:00Z", elsewhere);
        assert!(contested(&b, [&c]).is_empty());
    }

    #[test]
    fn only_overlapping_paths_are_lost() {
        // A root gateway with only Streamable HTTP against one at the root with both
        // transports: the newer loses /mcp and the metadata, keeps /sse and /message.
        let mut streamable = at_prefix("/");
        streamable["upstream"]["transports"] = serde_json::json!(["StreamableHttp"]);
        let old = claim("a", "old", "2026-01-01T00:00:00Z", streamable);
        let new = claim("b", "new", "2026-01-02T00:00:00Z", at_prefix("/"));
        let lost: Vec<_> = contested(&new, [&old]).into_keys().collect();
        assert_eq!(
            lost,
            [
                "/.well-known/oauth-protected-resource",
                "/.well-known/oauth-protected-resource/mcp",
                "/mcp"
            ]
        );
        // Distinct prefixes never collide.
        let other = claim("b", "news", "2026-01-02T00:00:00Z", at_prefix("/news"));
        assert!(contested(&other, [&old, &new]).is_empty());
    }

    #[test]
    fn the_oldest_of_several_claimants_is_named() {
        let first = claim("z", "first", "2026-01-01T00:00:00Z", at_prefix("/w"));
        let second = claim("a", "second", "2026-01-02T00:00:00Z", at_prefix("/w"));
        let third = claim("a", "third", "2026-01-03T00:00:00Z", at_prefix("/w"));
        let lost = contested(&third, [&second, &first]);
        assert!(lost.values().all(|owner| owner == "z/first"), "{lost:?}");
    }

    #[test]
    fn refused_and_deleted_gateways_claim_nothing() {
        let mut bad = gateway(at_prefix("/w"));
        bad.spec.upstream.url = "https://app.azurewebsites.net/?code=x".into();
        assert_eq!(
            Claim::of(&bad, &annotations::default_allowed_prefixes()),
            None
        );
        let mut going = gateway(at_prefix("/w"));
        going.metadata.deletion_timestamp = going.metadata.creation_timestamp.clone().or(Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
        ));
        assert_eq!(
            Claim::of(&going, &annotations::default_allowed_prefixes()),
            None
        );
        let mut snippet = gateway(at_prefix("/w"));
        snippet.spec.route.annotations.insert(
            "nginx.ingress.kubernetes.io/server-snippet".into(),
            "x".into(),
        );
        assert_eq!(
            Claim::of(&snippet, &annotations::default_allowed_prefixes()),
            None
        );
    }
}
