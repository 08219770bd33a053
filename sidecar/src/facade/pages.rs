//! The only HTML the gateway serves: the consent page and the error page of the facade.
//! Everything from a client is escaped; the pages load nothing and cannot be framed.

/// HTML-escapes text for element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;line-height:1.5}code{word-break:break-all}button{font-size:1rem;padding:.5rem 1.25rem;margin-right:.5rem}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title><style>{STYLE}</style></head><body>{body}</body></html>"
    )
}

/// What the consent page shows.
pub struct Consent<'a> {
    pub client_name: Option<&'a str>,
    pub client_id: &'a str,
    pub metadata_document: bool,
    pub redirect_uri: &'a str,
    pub resource: &'a str,
    pub scopes: &'a [String],
    pub action: &'a str,
    pub nonce: &'a str,
}

/// Asks the user whether this client may act for them. A proxy with one client at the IdP
/// must ask per client: the IdP's own consent covers the gateway, not who stands behind it.
pub fn consent(c: &Consent) -> String {
    let name = c.client_name.unwrap_or("An unnamed application");
    let identity = if c.metadata_document {
        format!(
            "<p>Its identity is published at <code>{}</code>.</p>",
            escape(c.client_id)
        )
    } else {
        "<p>It registered itself with this gateway; its name is not verified.</p>".to_string()
    };
    let scopes = if c.scopes.is_empty() {
        String::new()
    } else {
        format!(
            "<p>Permissions: <code>{}</code></p>",
            escape(&c.scopes.join(" "))
        )
    };
    page(
        "Allow access?",
        &format!(
            "<h1>Allow <q>{}</q> to use {} as you?</h1>{identity}<p>After you sign in, you will be sent back to <code>{}</code>.</p>{scopes}<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"nonce\" value=\"{}\"><button type=\"submit\" name=\"decision\" value=\"approve\">Allow</button><button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
            escape(name),
            escape(c.resource),
            escape(c.redirect_uri),
            escape(c.action),
            escape(c.nonce),
        ),
    )
}

/// A problem the user sees instead of being redirected (an unknown client or redirect URI
/// must not be redirected to).
pub fn error(message: &str) -> String {
    page(
        "Sign-in problem",
        &format!(
            "<h1>This sign-in cannot continue</h1><p>{}</p>",
            escape(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_is_escaped() {
        let html = consent(&Consent {
            client_name: Some("<script>alert(1)</script>"),
            client_id: "x",
            metadata_document: false,
            redirect_uri: "http://127.0.0.1/cb?a=\"b\"",
            resource: "https://mcp.example.com/mcp",
            scopes: &["mcp.tools".to_string()],
            action: "/oauth/consent",
            nonce: "n",
        });
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("a=&quot;b&quot;"));
        assert!(html.contains("value=\"approve\"") && html.contains("value=\"deny\""));
    }
}
