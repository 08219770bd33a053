//! The sidecar configuration (`config::Config`: YAML or JSON, then `validate`). Whatever
//! validates must also work:
//!
//! - it round-trips through YAML and through JSON unchanged;
//! - every upstream URI the proxy builds from it (and `.expect`s to parse) parses;
//! - the public URLs it hands out (resource identifier, resource metadata, the legacy message
//!   URL) are URLs that read back as themselves, on the public origin, and route back to
//!   the gateway's own routes.

#![no_main]

use http::Uri;
use libfuzzer_sys::fuzz_target;
use mcp_gateway_sidecar::config::{Config, Transport};
use mcp_gateway_sidecar::routes::{self, Route};
use url::Url;

fn check_public_url(config: &Config, url: &str, path: &str) {
    let parsed = Url::parse(url).unwrap_or_else(|e| panic!("{url:?} is not a URL: {e}"));
    assert_eq!(parsed.as_str(), url, "{url:?} does not read back as itself");
    assert_eq!(parsed.origin(), config.public_base_url.origin());
    assert_eq!(parsed.path(), path);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = serde_yaml::from_str::<Config>(text) else {
        return;
    };
    if config.validate().is_err() {
        return;
    }

    let yaml = serde_yaml::to_string(&config).expect("serializes to YAML");
    let back: Config = serde_yaml::from_str(&yaml).expect("its YAML parses");
    assert_eq!(back, config, "YAML round trip");
    let json = serde_json::to_string(&config).expect("serializes to JSON");
    let back: Config = serde_yaml::from_str(&json).expect("its JSON parses");
    assert_eq!(back, config, "JSON round trip");

    let origin = config.upstream.url.origin().ascii_serialization();
    for route in [Route::Mcp, Route::Sse, Route::Message] {
        let path = route.upstream_path(&config).expect("an upstream route");
        for uri in [
            format!("{origin}{path}"),
            format!("{origin}{path}?azmcpcs=a%2Bb&x=1"),
        ] {
            let parsed: Uri = uri
                .parse()
                .unwrap_or_else(|e| panic!("upstream URI {uri:?} does not parse: {e}"));
            assert_eq!(parsed.path(), path, "upstream path of {uri:?}");
        }
    }

    let prefix = config.prefix();
    check_public_url(&config, &config.resource_url(), &format!("{prefix}/mcp"));
    check_public_url(
        &config,
        &config.resource_metadata_url(),
        &format!("/.well-known/oauth-protected-resource{prefix}/mcp"),
    );
    let message = format!("{prefix}/message");
    check_public_url(&config, &config.public_url(&message), &message);

    let route = |path: &str| routes::route(&config, path);
    assert_eq!(
        route(&format!("{prefix}/mcp")) == Route::Mcp,
        config.serves(Transport::StreamableHttp)
    );
    assert_eq!(
        route(&format!("{prefix}/sse")) == Route::Sse,
        config.serves(Transport::Sse)
    );
    assert_eq!(
        route(&format!(
            "/.well-known/oauth-protected-resource{prefix}/mcp"
        )),
        Route::ResourceMetadata
    );
});
