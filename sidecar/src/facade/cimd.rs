//! Fetching Client ID Metadata Documents, guarded against server-side request forgery: the
//! URL's host is resolved once, every address must be public (no loopback, private,
//! link-local, CGNAT, multicast or reserved ranges) unless a test setting allows it, and the
//! request goes to that resolved address (no second lookup to rebind), with no redirects, a
//! size cap and short timeouts. Good documents are cached.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::client::{Client, Refusal, check_metadata_url, client_from_document};
use crate::config::ClientMetadataDocuments;
use crate::fetch::{self, ReadError, Redirects};

const MAX_DOCUMENT_BYTES: usize = 5 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);
const CACHE_TTL: Duration = Duration::from_secs(300);

pub struct MetadataFetcher {
    allow_private: bool,
    roots: Vec<reqwest::Certificate>,
    cache: moka::sync::Cache<String, Client>,
}

fn refuse(description: impl Into<String>) -> Refusal {
    Refusal {
        error: "invalid_client",
        description: description.into(),
    }
}

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && v6.segments()[1] == 0x0db8)
                || (first == 0x0064 && v6.segments()[1] == 0xff9b))
        }
    }
}

impl MetadataFetcher {
    pub fn new(config: &ClientMetadataDocuments) -> Result<Self, String> {
        let roots = match &config.ca_file {
            Some(path) => fetch::load_roots(path, "clientMetadataDocuments.caFile")?,
            None => Vec::new(),
        };
        Ok(Self {
            allow_private: config.allow_private_addresses,
            roots,
            cache: moka::sync::Cache::builder()
                .max_capacity(1_000)
                .time_to_live(CACHE_TTL)
                .build(),
        })
    }

    /// The client a metadata-document `client_id` describes.
    pub async fn client(&self, client_id: &str) -> Result<Client, Refusal> {
        if let Some(client) = self.cache.get(client_id) {
            return Ok(client);
        }
        let url = check_metadata_url(client_id)?;
        let host = url.host_str().unwrap_or_default().to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        let addresses: Vec<SocketAddr> =
            tokio::time::timeout(TIMEOUT, tokio::net::lookup_host((host.as_str(), port)))
                .await
                .map_err(|_| refuse("the client_id URL's host did not resolve in time"))?
                .map_err(|_| refuse("the client_id URL's host does not resolve"))?
                .collect();
        let Some(&address) = addresses.first() else {
            return Err(refuse("the client_id URL's host does not resolve"));
        };
        if !self.allow_private && addresses.iter().any(|a| !is_public(a.ip())) {
            return Err(refuse(
                "the client_id URL's host resolves to a private, loopback or reserved address",
            ));
        }
        // The checked address only, and no redirect to an unchecked one.
        let http = fetch::client_builder(TIMEOUT, Redirects::Never, &self.roots)
            .resolve(&host, address)
            .build()
            .map_err(|_| refuse("cannot fetch the client metadata document"))?;
        let response = http
            .get(url.clone())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|_| refuse("the client metadata document could not be fetched"))?;
        if !response.status().is_success() {
            return Err(refuse(format!(
                "fetching the client metadata document answered {}",
                response.status().as_u16()
            )));
        }
        let body = fetch::read_capped(response, MAX_DOCUMENT_BYTES)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge(max) => refuse(format!(
                    "the client metadata document is larger than {max} bytes"
                )),
                _ => refuse("the client metadata document could not be read"),
            })?;
        let client = client_from_document(client_id, &body)?;
        self.cache.insert(client_id.to_string(), client.clone());
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "240.0.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["20.190.128.1", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn private_targets_are_refused_before_any_request() {
        let fetcher = MetadataFetcher::new(&ClientMetadataDocuments::default()).unwrap();
        for url in [
            "https://127.0.0.1/client.json",
            "https://localhost/client.json",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.1/x.json",
        ] {
            let refusal = fetcher.client(url).await.unwrap_err();
            assert_eq!(refusal.error, "invalid_client");
            assert!(
                refusal.description.contains("private"),
                "{url}: {refusal:?}"
            );
        }
    }
}
