//! The request path, phase by phase, in one place:
//! route → origin → authenticate → read body → upstream request (key in, credentials out,
//! session opened) → send (retry once on a rejected key) → response (session sealed, SSE
//! endpoint rewritten, streamed) → log and count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::auth::{self, AuthError, Authenticator, Principal};
use crate::body::{self, Body};
use crate::config::{AuthConfig, Config};
use crate::cors::OriginPolicy;
use crate::facade::{Endpoint, Facade};
use crate::forward;
use crate::key::SystemKey;
use crate::long_call;
use crate::mcp_peek;
use crate::metadata;
use crate::metrics::{Metrics, Reason, Route as RouteLabel, RouteStatus};
use crate::polled_file::KeysFile;
use crate::request_id;
use crate::response::{self, plain};
use crate::routes::{self, Route};
use crate::server::ClientAddr;
use crate::session::SessionSealer;
use crate::sse::EndpointRewriter;
use crate::upstream::{self, UpstreamClient, UpstreamFailure, UpstreamTlsError};

const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
/// The query parameter of the public legacy-SSE message URL that carries the sealed
/// upstream query.
const MESSAGE_QUERY_PARAM: &str = "s";

/// How much of a 401/403 body is read, and for how long, to tell the host's empty refusal
/// from App Service Authentication's page.
const REFUSAL_MAX_BODY: usize = 16 * 1024;
const REFUSAL_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest body the authorization-server endpoints read (forms and registrations).
const FACADE_MAX_BODY: usize = 64 * 1024;

/// Everything a request needs, built once at start.
pub struct Gateway {
    pub config: Config,
    pub key: Arc<SystemKey>,
    pub auth: Option<Arc<Authenticator>>,
    pub facade: Option<Arc<Facade>>,
    /// Followed while the sidecar runs: a rotated session keys file needs no restart.
    pub sessions: Arc<KeysFile<SessionSealer>>,
    pub metrics: Arc<Metrics>,
    origins: OriginPolicy,
    key_header: HeaderName,
    upstream_origin: String,
    client: UpstreamClient,
    response_timeout: Duration,
    stream_idle: Duration,
    keep_alive: Duration,
    required_scopes: Vec<String>,
}

impl Gateway {
    pub fn new(
        config: Config,
        key: Arc<SystemKey>,
        auth: Option<Arc<Authenticator>>,
        facade: Option<Arc<Facade>>,
        sessions: Arc<KeysFile<SessionSealer>>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, UpstreamTlsError> {
        let client = upstream::upstream_client(&config)?;
        let required_scopes = match &config.auth {
            AuthConfig::Oidc(oidc) => oidc.required_scopes.clone(),
            AuthConfig::AuthorizationServer(facade) => facade.scopes.clone(),
            AuthConfig::Anonymous => Vec::new(),
        };
        Ok(Self {
            origins: OriginPolicy::new(&config),
            key_header: HeaderName::from_bytes(config.system_key.header.as_bytes())
                .expect("validated in Config::validate"),
            upstream_origin: config.upstream.url.origin().ascii_serialization(),
            client,
            response_timeout: Duration::from_secs(config.upstream.response_timeout_seconds.into()),
            stream_idle: Duration::from_secs(config.upstream.stream_idle_timeout_seconds.into()),
            keep_alive: Duration::from_secs(config.client_keep_alive_seconds.into()),
            required_scopes,
            config,
            key,
            auth,
            facade,
            sessions,
            metrics,
        })
    }

    /// Ready to serve: the key is loaded and, with OIDC, signing keys have been fetched.
    pub fn ready(&self) -> bool {
        self.key.is_loaded() && self.auth.as_ref().is_none_or(|a| a.ready())
    }

    /// Serves one request.
    pub async fn handle(self: Arc<Self>, mut request: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let route = routes::route(&self.config, request.uri().path());
        let request_id = request_id::of(request.headers());
        request
            .headers_mut()
            .insert(request_id::HEADER, request_id.clone());
        let mut log = RequestLog::new(route, request.method());
        log.request_id = request_id.to_str().unwrap_or_default().to_string();
        log.client = request.extensions().get::<ClientAddr>().map(|c| c.0);
        let origin = request.headers().get(header::ORIGIN).cloned();
        let mut response = self.respond(route, request, &mut log).await;
        self.origins
            .response_headers(origin.as_ref(), response.headers_mut());
        response
            .headers_mut()
            .insert(request_id::HEADER, request_id);
        self.metrics
            .requests
            .get_or_create(&RouteStatus {
                route: route.name(),
                status: response.status().as_u16(),
            })
            .inc();
        log.emit(response.status(), started.elapsed());
        response
    }

    async fn respond(
        self: &Arc<Self>,
        route: Route,
        request: Request<Incoming>,
        log: &mut RequestLog,
    ) -> Response<Body> {
        if request.method() == Method::OPTIONS {
            return match self.origins.preflight(request.headers()) {
                Some(headers) => response::headers_only(StatusCode::NO_CONTENT, headers),
                None => plain(StatusCode::FORBIDDEN, "origin not allowed"),
            };
        }
        match route {
            Route::NotFound => plain(StatusCode::NOT_FOUND, "not found"),
            Route::ResourceMetadata => self.resource_metadata(request.method()),
            Route::Facade(endpoint) => self.facade(endpoint, request).await,
            Route::Mcp | Route::Sse | Route::Message => {
                if !self.origins.permits(request.headers()) {
                    return plain(StatusCode::FORBIDDEN, "origin not allowed");
                }
                let principal = match self.authenticate(&request).await {
                    Ok(p) => p,
                    Err(error) => {
                        log.reason = Some(error.reason());
                        return self.auth_failure(&error);
                    }
                };
                log.subject = Some(principal.subject.clone());
                log.client_id = principal.client_id.clone();
                self.forward(route, principal, request, log).await
            }
        }
    }

    /// A request to the authorization-server facade; its form or JSON body is small.
    async fn facade(&self, endpoint: Endpoint, request: Request<Incoming>) -> Response<Body> {
        let Some(facade) = &self.facade else {
            return plain(StatusCode::NOT_FOUND, "not found");
        };
        let (parts, incoming) = request.into_parts();
        let body = match Limited::new(incoming, FACADE_MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        };
        facade
            .handle(
                endpoint,
                &parts.method,
                parts.uri.query(),
                &parts.headers,
                body,
            )
            .await
    }

    fn resource_metadata(&self, method: &Method) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "use GET");
        }
        match metadata::protected_resource_metadata(&self.config) {
            Some(doc) => response::public_json(doc.to_string()),
            None => plain(
                StatusCode::NOT_FOUND,
                "this gateway does not authenticate clients",
            ),
        }
    }

    async fn authenticate(&self, request: &Request<Incoming>) -> Result<Principal, AuthError> {
        match &self.auth {
            Some(auth) => {
                auth.authenticate(request.headers().get(header::AUTHORIZATION))
                    .await
            }
            None => Ok(Principal::anonymous()),
        }
    }

    fn auth_failure(&self, error: &AuthError) -> Response<Body> {
        self.metrics
            .auth_failures
            .get_or_create(&Reason {
                reason: error.reason(),
            })
            .inc();
        let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        let challenge = auth::challenge(
            &self.config.resource_metadata_url(),
            &self.required_scopes,
            Some(error),
        );
        let mut r = plain(
            status,
            match status {
                StatusCode::FORBIDDEN => "insufficient scope",
                // No signing keys yet: the client's token may be fine; it should retry.
                StatusCode::SERVICE_UNAVAILABLE => "the gateway cannot verify access tokens yet",
                _ => "unauthorized",
            },
        );
        r.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        r
    }

    async fn forward(
        self: &Arc<Self>,
        route: Route,
        principal: Principal,
        request: Request<Incoming>,
        log: &mut RequestLog,
    ) -> Response<Body> {
        let (parts, incoming) = request.into_parts();
        let limit = self.config.limits.max_request_body_bytes;
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        }
        // MCP requests are single JSON-RPC messages: reading them whole is cheap, lets the
        // log name the method, and makes a retry with a renewed key possible.
        let body = match Limited::new(incoming, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
            }
            Err(_) => return plain(StatusCode::BAD_REQUEST, "could not read the request body"),
        };
        let peek = mcp_peek::peek(&parts.headers, &body);
        log.mcp_method = peek.method;
        log.mcp_name = peek.name;

        let mut headers = parts.headers;
        if let Some(sealed) = headers.remove(&SESSION_HEADER) {
            let opened = sealed
                .to_str()
                .ok()
                .and_then(|s| self.sessions.current().open(&principal.subject, s).ok());
            match opened.and_then(|id| HeaderValue::from_str(&id).ok()) {
                Some(id) => {
                    headers.insert(SESSION_HEADER, id);
                }
                // Unknown, tampered, or another subject's session: MCP's answer to a session
                // the server does not know is 404, which makes clients start a new one.
                None => return session_not_found(),
            }
        }
        let path = route.upstream_path(&self.config).expect("upstream route");
        let query = match route {
            // Legacy SSE messages carry the sealed query from the endpoint event: only the
            // subject that opened the stream can post to it.
            Route::Message => match self.open_message_query(&principal, parts.uri.query()) {
                Some(query) => query,
                None => return session_not_found(),
            },
            _ => forward::query_without_key(parts.uri.query()),
        };
        let uri: Uri = match query {
            Some(q) => format!("{}{path}?{q}", self.upstream_origin),
            None => format!("{}{path}", self.upstream_origin),
        }
        .parse()
        .expect("built from a validated URL");

        let started = Instant::now();
        let may_answer_on_own_stream = route == Route::Mcp
            && parts.method == Method::POST
            && long_call::accepts_event_stream(&headers);
        let gateway = Arc::clone(self);
        let sent_body = body.clone();
        let mut pending: long_call::Pending = Box::pin(async move {
            gateway
                .send(&parts.method, &uri, &headers, &sent_body)
                .await
        });
        let answer = if may_answer_on_own_stream {
            match tokio::time::timeout(self.keep_alive, &mut pending).await {
                Ok(answer) => answer,
                // Not answered within a keep-alive interval: keep the hops in front busy on a
                // stream of the gateway's own (see `long_call`), if the request allows it.
                Err(_) => match long_call::request_id(&body) {
                    Some(id) => {
                        let options = long_call::Options {
                            keep_alive: self.keep_alive,
                            idle: self.stream_idle,
                        };
                        return long_call::respond(
                            pending,
                            id,
                            options,
                            self.metrics.clone(),
                            started.into(),
                            long_call::LogContext {
                                request_id: log.request_id.clone(),
                            },
                        );
                    }
                    None => pending.await,
                },
            }
        } else {
            pending.await
        };
        let upstream = match answer {
            Ok(r) => r,
            Err(failure) => {
                log.reason = Some(failure.reason());
                return failure.response();
            }
        };
        self.metrics
            .upstream_latency
            .get_or_create(&RouteLabel {
                route: route.name(),
            })
            .observe(started.elapsed().as_secs_f64());
        self.client_response(route, &principal, upstream)
    }

    /// Sends upstream with the current key. If the upstream rejects the key, asks the key
    /// source for a newer one (waiting briefly for it, see [`crate::key::ROTATION_GRACE`])
    /// and tries once more: a rejected request did not run, so repeating it is safe. Every
    /// answer is recorded as the upstream's verdict on the key it carried.
    async fn send(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &http::HeaderMap,
        body: &Bytes,
    ) -> Result<Response<Incoming>, UpstreamFailure> {
        let mut retried = false;
        loop {
            let Some(key) = self.key.current() else {
                return Err(UpstreamFailure::NoKey);
            };
            let mut request = Request::new(Full::new(body.clone()));
            *request.method_mut() = method.clone();
            *request.uri_mut() = uri.clone();
            *request.headers_mut() =
                forward::upstream_request_headers(headers.clone(), &self.key_header, &key.value);
            let response =
                match tokio::time::timeout(self.response_timeout, self.client.request(request))
                    .await
                {
                    Err(_) => return Err(UpstreamFailure::Timeout),
                    Ok(Err(error)) => {
                        let (cause, detail) = upstream::cause(&error);
                        tracing::warn!(
                            upstream = %self.upstream_origin,
                            cause,
                            error = %detail,
                            "upstream request failed"
                        );
                        return Err(UpstreamFailure::Unreachable);
                    }
                    Ok(Ok(r)) => r,
                };
            let status = response.status();
            match self.refused_by(response).await {
                Ok(response) => {
                    self.key.upstream_accepted(key.generation);
                    return Ok(response);
                }
                Err(upstream::Refusal::AppServiceAuth) => {
                    // Says nothing about the key: no retry, no verdict.
                    self.metrics.upstream_platform_refusals.inc();
                    tracing::warn!(
                        "App Service Authentication in front of the Function App refused the gateway's request; it never reached the Functions host"
                    );
                    return Err(UpstreamFailure::AppServiceAuth);
                }
                Err(upstream::Refusal::Key) => {}
            }
            // Retry when a newer key is in use: loaded by a concurrent request that was
            // rejected a moment earlier, or now, on demand.
            if !retried && self.key.renewed_after_rejection(key.generation).await {
                retried = true;
                self.metrics.upstream_key_retries.inc();
                continue;
            }
            self.key.upstream_rejected(key.generation, status.as_u16());
            return Err(UpstreamFailure::KeyRejected);
        }
    }

    /// The response if it is not a refusal; else who refused (reading a 401/403's body,
    /// which the gateway never relays, to see whether it is the host's empty one).
    async fn refused_by(
        &self,
        response: Response<Incoming>,
    ) -> Result<Response<Incoming>, upstream::Refusal> {
        let status = response.status();
        if status.is_redirection() {
            return match upstream::refusal(status, response.headers(), false) {
                Some(refusal) => Err(refusal),
                None => Ok(response),
            };
        }
        if !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Ok(response);
        }
        let (parts, incoming) = response.into_parts();
        let body_empty = incoming.is_end_stream()
            || match tokio::time::timeout(
                REFUSAL_READ_TIMEOUT,
                Limited::new(incoming, REFUSAL_MAX_BODY).collect(),
            )
            .await
            {
                Ok(Ok(collected)) => collected.to_bytes().is_empty(),
                // Cut off or too slow to say: the host's verdict, as before the distinction.
                Ok(Err(_)) | Err(_) => true,
            };
        Err(upstream::refusal(status, &parts.headers, body_empty).unwrap_or(upstream::Refusal::Key))
    }

    /// The upstream query of a legacy SSE message POST: the `s` parameter opened with the
    /// caller's subject (`None`: missing, forged or another subject's).
    fn open_message_query(
        &self,
        principal: &Principal,
        query: Option<&str>,
    ) -> Option<Option<String>> {
        let sealed = query?
            .split('&')
            .find_map(|pair| pair.strip_prefix(MESSAGE_QUERY_PARAM)?.strip_prefix('='))?;
        let opened = self
            .sessions
            .current()
            .open(&principal.subject, sealed)
            .ok()?;
        Some(forward::query_without_key(Some(&opened)))
    }

    fn client_response(
        &self,
        route: Route,
        principal: &Principal,
        upstream: Response<Incoming>,
    ) -> Response<Body> {
        let (mut parts, incoming) = upstream.into_parts();
        if let Some(id) = parts.headers.remove(&SESSION_HEADER) {
            let sealed = id
                .to_str()
                .ok()
                .map(|id| self.sessions.current().seal(&principal.subject, id));
            if let Some(v) = sealed.and_then(|s| HeaderValue::from_str(&s).ok()) {
                parts.headers.insert(SESSION_HEADER, v);
            }
        }
        let event_stream = forward::is_event_stream(&parts.headers);
        parts.headers = forward::client_response_headers(parts.headers);
        let rewriter = (route == Route::Sse && event_stream).then(|| {
            let (sessions, subject) = (self.sessions.clone(), principal.subject.clone());
            EndpointRewriter::new(
                format!("{}/message", self.config.prefix()),
                Route::Message
                    .upstream_path(&self.config)
                    .expect("message route"),
            )
            .with_query_sealer(Box::new(move |query| {
                format!(
                    "{MESSAGE_QUERY_PARAM}={}",
                    sessions.current().seal(&subject, query)
                )
            }))
        });
        if rewriter.is_some() {
            // The rewrite changes the length; bodies passed unchanged keep theirs.
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        let options = body::RelayOptions {
            idle: self.stream_idle,
            keep_alive: Some(self.keep_alive),
            after_own_bytes: false,
        };
        let body = body::relay(incoming, rewriter, options, event_stream, &self.metrics);
        Response::from_parts(parts, body)
    }
}

impl Principal {
    fn anonymous() -> Self {
        Principal {
            subject: "anonymous".into(),
            client_id: None,
            tenant: None,
            scopes: Vec::new(),
            expires_at: u64::MAX,
        }
    }
}

fn session_not_found() -> Response<Body> {
    response::json(
        StatusCode::NOT_FOUND,
        r#"{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}"#,
    )
}

/// One structured log line per request. Holds only what is safe to log: no key, no token.
struct RequestLog {
    route: Route,
    method: Method,
    request_id: String,
    client: Option<std::net::SocketAddr>,
    subject: Option<String>,
    client_id: Option<String>,
    mcp_method: Option<String>,
    mcp_name: Option<String>,
    /// Why the gateway answered itself: an auth failure's or an upstream failure's reason.
    reason: Option<&'static str>,
}

impl RequestLog {
    fn new(route: Route, method: &Method) -> Self {
        Self {
            route,
            method: method.clone(),
            request_id: String::new(),
            client: None,
            subject: None,
            client_id: None,
            mcp_method: None,
            mcp_name: None,
            reason: None,
        }
    }

    fn emit(&self, status: StatusCode, elapsed: Duration) {
        tracing::info!(
            route = self.route.name(),
            http_method = %self.method,
            status = status.as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            request_id = %self.request_id,
            client = self.client.map(tracing::field::display),
            subject = self.subject.as_deref(),
            client_id = self.client_id.as_deref(),
            mcp_method = self.mcp_method.as_deref(),
            mcp_name = self.mcp_name.as_deref(),
            reason = self.reason,
            "request"
        );
    }
}
