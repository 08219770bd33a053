//! Writes the seed corpora, `corpus/<target>/seed-*`: `cargo run --example make_seeds` from
//! `fuzz/`. Deterministic except for the RSA-PSS signatures and the sealed session ids, which
//! are randomized by design.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use mcp_gateway_fuzz::oidc::{self, KEYS};
use mcp_gateway_sidecar::session::SessionSealer;
use serde_json::json;

const KEY: &str = "SyStEmKeY_0123456789abcdefAzFuXyZ==";

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn jwt() {
    for (name, header, claims, signer, _) in oidc::seed_tokens() {
        let token = oidc::sign(header.as_bytes(), claims.to_string().as_bytes(), &signer);
        write(
            "jwt",
            &format!("header-{name}"),
            format!("\0Bearer {token}").as_bytes(),
        );
    }
    write("jwt", "header-basic", b"\0Basic dXNlcjpwdw==");
    write("jwt", "header-junk", b"\0bearer   a.b.c  ");
    let claims = [
        ("good", oidc::good_claims()),
        (
            "aud-array",
            oidc::claims_with(json!({"aud": ["x", "https://mcp.example.com/weather/mcp"]})),
        ),
        (
            "float-exp",
            oidc::claims_with(json!({"exp": 4.1e9, "nbf": 1.7e9})),
        ),
        (
            "scope-and-roles",
            oidc::claims_with(
                json!({"scp": null, "scope": "openid api://weather/mcp.tools", "roles": "admin"}),
            ),
        ),
        (
            "sub-only",
            oidc::claims_with(
                json!({"tid": "72F988BF-86F1-41AF-91AB-2D7CD011DB47", "oid": "", "client_id": "c3", "azp": null}),
            ),
        ),
    ];
    for (name, claims) in &claims {
        write(
            "jwt",
            &format!("claims-{name}"),
            &cat(&[b"\x01", claims.to_string().as_bytes()]),
        );
    }
    let good = oidc::good_claims().to_string();
    // Valid claims with a member only a complete JSON parse refuses (RFC 7519 §7.2): the
    // derived claims reader skipped these unchecked, and the fuzz smoke found it.
    let open = good.strip_suffix('}').expect("an object");
    for (name, member) in [
        ("lone-surrogate", &br#""x":"\ud800"}"#[..]),
        ("not-utf8", b"\"x\":\"\xff\"}"),
        ("number-out-of-range", br#""x":1e400}"#),
    ] {
        write(
            "jwt",
            &format!("claims-{name}"),
            &cat(&[b"\x01", open.as_bytes(), b",", member]),
        );
    }
    let signed = [
        ("rs256", 0u8, r#"{"alg":"RS256","kid":"rsa"}"#),
        ("es256-nokid", 2, r#"{"alg":"ES256"}"#),
        (
            "eddsa-jku",
            3,
            r#"{"alg":"EdDSA","kid":"ed","jku":"https://evil.example/keys"}"#,
        ),
        ("hs256-rsa-pem", 4, r#"{"alg":"HS256","kid":"rsa"}"#),
        ("hs256-oct", 5, r#"{"alg":"HS256","kid":"hmac"}"#),
        ("small-rsa", 6, r#"{"alg":"RS256","kid":"rsa-small"}"#),
        ("none", 8, r#"{"alg":"none"}"#),
    ];
    for (name, selector, header) in signed {
        write(
            "jwt",
            &format!("signed-{name}"),
            &cat(&[&[2, selector], header.as_bytes(), b"\0", good.as_bytes()]),
        );
    }
}

fn jwks() {
    write("jwks", "fixture", oidc::jwks().to_string().as_bytes());
    let k = &*KEYS;
    let mut entra = serde_json::to_value(&k.rsa_a_jwk).unwrap();
    entra["kid"] = json!("rsa");
    entra["use"] = json!("sig");
    entra["x5t"] = json!("nOo3ZDrODXEK1jKWhXslHR_KXEg");
    entra["x5c"] = json!(["MIIDBTCCAe2gAwIBAgIQN33ROaIJ6bJBWDCxtmJEbjANBgkqhkiG9w0BAQsFADAt"]);
    entra["issuer"] = json!(oidc::ISSUER);
    write(
        "jwks",
        "entra-like",
        json!({"keys": [entra]}).to_string().as_bytes(),
    );
    let mut ec = serde_json::to_value(&k.ec_jwk).unwrap();
    ec["key_ops"] = json!(["verify"]);
    ec["alg"] = json!("ES256");
    let ed = serde_json::to_value(&k.ed_jwk).unwrap();
    write(
        "jwks",
        "ec-and-ed-no-kid",
        json!({"keys": [ec, ed]}).to_string().as_bytes(),
    );
    write(
        "jwks",
        "only-unusable",
        br#"{"keys":[{"kty":"oct","kid":"rsa","k":"c2VjcmV0"},{"kty":"EC","kid":"ec","crv":"P-521","x":"AA","y":"AA"},{"kty":"RSA","kid":"x"}]}"#,
    );
    // Found by this target (minimised): an 18-byte Ed25519 key made jsonwebtoken panic.
    write(
        "jwks",
        "regression-ed25519-short",
        br#"{"keys":[{"e":"AQAB","kid":"rsa","kty":"RSzda6uh06EGjDWZ_EOvBs"},{"crv":"Ed25519","kid":"}d","kty":"OKP","x":"Wg8UPP0f5GDdfXdUI-JBpwct"}]}"#,
    );
}

fn sse() {
    let azure = |nl: &str| {
        [
            "event: endpoint".to_string(),
            format!("data: message?azmcpcs=Q2xpZW50U3RhdGU%3D&code={KEY}"),
            String::new(),
            ": ping".into(),
            String::new(),
            "event: message".into(),
            r#"data: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"get_weather"}]}}"#.into(),
            "id: 7".into(),
            String::new(),
        ]
        .join(nl)
            + nl
    };
    write(
        "sse_rewriter",
        "azure-lf",
        &cat(&[b"\x00", azure("\n").as_bytes()]),
    );
    write(
        "sse_rewriter",
        "azure-crlf-sealed-chunked",
        &cat(&[b"\x31", &[20, 1, 60], azure("\r\n").as_bytes()]),
    );
    write(
        "sse_rewriter",
        "azure-cr-sealed",
        &cat(&[b"\x01", azure("\r").as_bytes()]),
    );
    let absolute = format!(
        "\u{feff}id: 1\nevent: endpoint\ndata: https://app.azurewebsites.net/runtime/webhooks/mcp/message?code={KEY}&azmcpcs=z\n\nevent: message\ndata: x\n\n"
    );
    write(
        "sse_rewriter",
        "absolute-bom",
        &cat(&[b"\x21", &[3, 9], absolute.as_bytes()]),
    );
    let odd = format!(
        "data: message?azmcpcs=a&co\ndata: de={KEY}\nevent: endpoint\n\nevent: message\ndata: {{\"u\":\"https://app/runtime/webhooks/mcp/message?code={KEY}\\u0026azmcpcs=a\"}}\n\nevent: message\ndata: x\nevent: endpoint\ndata: message?code={KEY}\n\n: bye"
    );
    write(
        "sse_rewriter",
        "split-data-and-late-event",
        &cat(&[b"\x01", odd.as_bytes()]),
    );
    let refused = format!(
        "event: endpoint\ndata: /elsewhere?code={KEY}\n\nretry: 3000\n\ndata: a\ndata:b\n\nevent: endpoint\ndata: ../mcp/message?CODE={KEY};x=1"
    );
    write(
        "sse_rewriter",
        "refused-and-cut",
        &cat(&[b"\x00", refused.as_bytes()]),
    );
    // Found by this target (minimised): a lone CR, a dropped data line, then the blank line's
    // LF became one CRLF and the event never ended.
    write(
        "sse_rewriter",
        "regression-cr-then-lf",
        b"\x00event: endpoint\ndata: message? endp\rdata: 7\n\n",
    );
    // Found by this target: a URL with its own query inside a query kept its code.
    let nested = format!(
        "data: {{\"next\":\"/runtime/webhooks/mcp/message?to=https://app/runtime/webhooks/mcp/message?code={KEY}\\u0026azmcpcs=a\"}}\n\n"
    );
    write(
        "sse_rewriter",
        "regression-nested-query",
        &cat(&[b"\x00", nested.as_bytes()]),
    );
}

fn www_authenticate() {
    let prm = "https://mcp.example.com/.well-known/oauth-protected-resource/weather/mcp";
    write(
        "www_authenticate",
        "no-token",
        format!("\x10{prm}\0api://weather/mcp.tools").as_bytes(),
    );
    write(
        "www_authenticate",
        "expired-two-scopes",
        format!("\x28{prm}\0api://weather/mcp.tools\0offline_access").as_bytes(),
    );
    write(
        "www_authenticate",
        "injection",
        "\x35https://x/\"\r\nSet-Cookie: a=b\0a\"b, error=\"x\0c\\d\u{85}é\x7f".as_bytes(),
    );
    write(
        "www_authenticate",
        "insufficient-scope",
        format!("\x05{prm}").as_bytes(),
    );
}

fn config() {
    let example = include_str!("../../examples/sidecar/config.yaml");
    write("config", "example", example.as_bytes());
    let parsed: mcp_gateway_sidecar::config::Config = serde_yaml::from_str(example).unwrap();
    write(
        "config",
        "example-json",
        serde_json::to_string(&parsed).unwrap().as_bytes(),
    );
    // Found by this target (minimised by hand): both validated, and every request would have
    // panicked building the upstream URI.
    write(
        "config",
        "regression-upstream-path-quote",
        example
            .replace("path: /runtime/webhooks/mcp", "path: '/runtime/\"webhooks'")
            .as_bytes(),
    );
    write(
        "config",
        "regression-upstream-host-backtick",
        example
            .replace(
                "weather-fn.azurewebsites.net",
                "weather-fn.azureweb`sites.net",
            )
            .as_bytes(),
    );
    write(
        "config",
        "minimal-anonymous",
        b"publicBaseUrl: https://mcp.example.com\nupstream: {url: 'http://localhost:7071', transports: [sse]}\nsystemKey: {file: /k, header: x-functions-key}\nauth: {mode: Anonymous}\nallowedOrigins: ['*']\n",
    );
}

fn mcp_peek() {
    write(
        "mcp_peek",
        "tools-call",
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"Paris"}}}"#,
    );
    write(
        "mcp_peek",
        "headers",
        b"mcp-method: resources/read\nmcp-name: file:///etc/motd\n\n{\"method\":\"ignored\"}",
    );
    write(
        "mcp_peek",
        "resources-read",
        br#"{"jsonrpc":"2.0","id":"x","method":"resources/read","params":{"uri":"file:///a\u0000b"}}"#,
    );
    write("mcp_peek", "batch", br#"[{"method":"a"},{"method":"b"}]"#);
}

fn session_id() {
    // Sealed with another key than the target's, so they exercise the format checks only.
    let other = SessionSealer::new(vec![[1u8; 32]]);
    let sealed = other.seal("tid/oid-alice", "CfDJ8Kx0uVh1vQ2_state+/=");
    let key_line = STANDARD.encode([3u8; 32]);
    write(
        "session_id",
        "alice",
        format!("tid/oid-alice\0tid/oid-bob\0CfDJ8Kx0uVh1vQ2_state+/=\0{sealed}\0\x05\x20\0# rotation\n{key_line}\n\n{key_line} # old\n").as_bytes(),
    );
    write(
        "session_id",
        "anonymous-bad-keys",
        format!(
            "anonymous\0anonymous\0\0{}\0\x01\0not base64!\n{}\n",
            URL_SAFE_NO_PAD.encode([1u8; 41]),
            STANDARD.encode([3u8; 31])
        )
        .as_bytes(),
    );
}

fn forward() {
    for (name, q) in [
        ("azure", format!("azmcpcs=Q2xpZW50U3RhdGU%3D&code={KEY}")),
        (
            "variants",
            format!("CODE={KEY}&c%6Fde=2&code+=3&codec=1&&x=%7B%7D"),
        ),
        (
            "endpoint-relative",
            format!("message?azmcpcs=abc&code={KEY}"),
        ),
        (
            "endpoint-absolute",
            format!(
                "https://app.azurewebsites.net/runtime/webhooks/mcp/message?code={KEY}&azmcpcs=z;code=2"
            ),
        ),
        (
            "endpoint-root",
            format!("/runtime/webhooks/MCP/Message?x=%22a%22&code={KEY}#frag"),
        ),
    ] {
        write("forward", name, q.as_bytes());
    }
}

fn main() {
    jwt();
    jwks();
    sse();
    www_authenticate();
    config();
    mcp_peek();
    session_id();
    forward();
}
