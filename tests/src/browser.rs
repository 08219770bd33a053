//! A headless user agent for OAuth sign-ins in tests: a cookie jar, redirects followed by
//! hand (so the test sees where each one goes), and the facade's consent form submitted with
//! the decision the test chooses. It stops at the client's redirect URI, which needs no
//! server: the test reads the code from the URL.

use std::sync::Arc;

use anyhow::{Context, bail};
use reqwest::header::LOCATION;
use url::Url;

pub struct Browser {
    http: reqwest::Client,
    pub jar: Arc<reqwest::cookie::Jar>,
}

/// Where a sign-in ended, and the pages on the way.
#[derive(Debug)]
pub struct Landing {
    /// The client redirect URI, with its query (code or error, state, iss).
    pub url: Url,
    /// Every URL visited, in order (without queries, which hold codes).
    pub visited: Vec<String>,
}

impl Landing {
    pub fn param(&self, name: &str) -> Option<String> {
        self.url
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Self::build(false)
    }

    /// A browser that opens a new connection for every request, so a connection-level load
    /// balancer sends consecutive requests to different replicas.
    pub fn one_connection_per_request() -> Self {
        Self::build(true)
    }

    fn build(fresh_connections: bool) -> Self {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let mut builder = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none());
        if fresh_connections {
            builder = builder.pool_max_idle_per_host(0);
        }
        Self {
            http: builder.build().expect("client"),
            jar,
        }
    }

    /// The underlying client (same cookies and connection policy).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Follows `start` until a redirect to a URL starting with `stop_at`; on the consent
    /// page, answers `decision` (`approve` or `deny`).
    pub async fn sign_in(
        &self,
        start: &str,
        stop_at: &str,
        decision: &str,
    ) -> anyhow::Result<Landing> {
        let mut visited = Vec::new();
        let mut next = Some((reqwest::Method::GET, Url::parse(start)?, None::<String>));
        for _ in 0..20 {
            let Some((method, url, form)) = next.take() else {
                break;
            };
            visited.push(format!(
                "{}{}",
                url.origin().ascii_serialization(),
                url.path()
            ));
            let mut request = self.http.request(method, url.clone());
            if let Some(form) = form {
                request = request
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(form);
            }
            let response = request.send().await?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .context("redirect without Location")?
                    .to_str()?;
                let target = url.join(location)?;
                if target.as_str().starts_with(stop_at) {
                    return Ok(Landing {
                        url: target,
                        visited,
                    });
                }
                next = Some((reqwest::Method::GET, target, None));
                continue;
            }
            let body = response.text().await?;
            if !status.is_success() {
                bail!(
                    "{status} at {}: {}",
                    url.path(),
                    body.chars().take(300).collect::<String>()
                );
            }
            let (action, fields) = consent_form(&body).with_context(|| {
                format!(
                    "a page without a form at {}: {}",
                    url.path(),
                    body.chars().take(300).collect::<String>()
                )
            })?;
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &fields {
                form.append_pair(k, v);
            }
            form.append_pair("decision", decision);
            next = Some((
                reqwest::Method::POST,
                url.join(&action)?,
                Some(form.finish()),
            ));
        }
        bail!(
            "no redirect to {stop_at} after {} pages: {visited:?}",
            visited.len()
        )
    }
}

/// The consent form's action and hidden fields (the gateway's page is simple and fixed).
fn consent_form(html: &str) -> Option<(String, Vec<(String, String)>)> {
    let form = &html[html.find("<form")?..];
    let action = attribute(form, "action")?;
    let mut fields = Vec::new();
    let mut rest = form;
    while let Some(i) = rest.find("<input") {
        let tag_end = rest[i..].find('>')? + i;
        let tag = &rest[i..tag_end];
        if tag.contains("type=\"hidden\"") {
            fields.push((attribute(tag, "name")?, attribute(tag, "value")?));
        }
        rest = &rest[tag_end..];
    }
    Some((
        unescape(&action),
        fields.into_iter().map(|(k, v)| (k, unescape(&v))).collect(),
    ))
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = tag[start..].find('"')? + start;
    Some(tag[start..end].to_string())
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
