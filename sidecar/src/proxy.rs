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
use crate::caller_identity::CallerKeys;
use crate::client_address::{self, TrustedProxies};
use crate::config::{AuthConfig, Config, DEFAULT_CALLER_IDENTITY_HEADER};
use crate::cors::OriginPolicy;
use crate::facade::{Endpoint, Facade};
use crate::forward;
use crate::key::SystemKey;
use crate::long_call;
use crate::mcp_peek;
use crate::metadata;
use crate::metrics::{Metrics, Reason, Route as RouteLabel, RouteStatus};
use crate::polled_file::KeysFile;
use crate::rate_limit::{self, RateLimiter};
use crate::request_id;
use crate::request_log::{self, RequestLog, ToolRecord};
use crate::response::{self, plain};
use crate::routes::{self, Route};
use crate::server::ClientAddr;
use crate::session::SessionSealer;
use crate::sse::EndpointRewriter;
use crate::telemetry::{RequestSpan, Tracing};
use crate::tool_access::{ToolAccess, Verdict};
use crate::tool_requests;
use crate::tools_list::ToolsView;
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

/// The JSON-RPC error code of a `tools/call` the caller may not make (MCP leaves -32000 to
/// -32099 to implementations).
const TOOL_FORBIDDEN: i64 = -32003;

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
    tool_access: Option<ToolAccess>,
    rate_limits: Option<RateLimiter>,
    /// With `callerIdentity`: the header, and the keys that sign it.
    caller_identity: Option<(HeaderName, Arc<KeysFile<CallerKeys>>)>,
    /// With `observability.tracing`.
    tracing: Option<Tracing>,
    /// With `clientAddress`.
    trusted_proxies: Option<TrustedProxies>,
}

impl Gateway {
    pub fn new(
        config: Config,
        key: Arc<SystemKey>,
        auth: Option<Arc<Authenticator>>,
        facade: Option<Arc<Facade>>,
        sessions: Arc<KeysFile<SessionSealer>>,
        metrics: Arc<Metrics>,
        caller_keys: Option<Arc<KeysFile<CallerKeys>>>,
    ) -> Result<Self, GatewayError> {
        let client = upstream::upstream_client(&config)?;
        let tracing = match &config.observability.tracing {
            Some(settings) => Some(Tracing::start(settings).map_err(GatewayError::Tracing)?),
            None => None,
        };
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
            tool_access: config.tool_access.as_ref().map(ToolAccess::new),
            rate_limits: config.rate_limits.as_ref().map(RateLimiter::new),
            caller_identity: config
                .caller_identity
                .as_ref()
                .zip(caller_keys)
                .map(|(c, keys)| {
                    let header = HeaderName::from_bytes(c.header.to_ascii_lowercase().as_bytes())
                        .expect("validated in Config::validate");
                    (header, keys)
                }),
            tracing,
            trusted_proxies: config.client_address.as_ref().map(TrustedProxies::new),
            config,
            key,
            auth,
            facade,
            sessions,
            metrics,
        })
    }

    /// Exports the spans not yet exported (at shutdown).
    pub fn shutdown(&self) {
        if let Some(tracing) = &self.tracing {
            tracing.shutdown();
        }
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
        log.peer = request.extensions().get::<ClientAddr>().map(|c| c.0);
        log.client = log.peer.map(|peer| match &self.trusted_proxies {
            Some(proxies) => proxies.client(peer.ip(), request.headers()),
            None => client_address::canonical(peer.ip()),
        });
        log.span = self.tracing.as_ref().map(|t| {
            let name = request_log::span_name(request.method(), route, self.config.prefix());
            t.request_span(name, request.headers())
        });
        let origin = request.headers().get(header::ORIGIN).cloned();
        let has_body = !request.body().is_end_stream();
        let mut response = self.respond(route, request, &mut log).await;
        if has_body && !log.body_read {
            // Answered before the body was read (a 401, say): hyper then closes the
            // connection, sometimes before the client sees it and reuses it for its next
            // request ("server disconnected"). Saying so lets the client open a new one.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
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
        log.emit(
            response.status(),
            started.elapsed(),
            &self.config.observability.audit,
        );
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
            Route::CallerKeys => match &self.caller_identity {
                Some((_, keys)) => response::public_json(keys.current().jwks().to_string()),
                None => plain(StatusCode::NOT_FOUND, "not found"),
            },
            Route::Facade(endpoint) => {
                // It reads its (small) body before answering, but for one too large.
                log.body_read = true;
                self.facade(endpoint, request).await
            }
            Route::Mcp | Route::Sse | Route::Message => {
                // Methods are case-sensitive here but not to the host (ASP.NET Core's
                // `HttpMethods.IsPost` ignores case): a `post` must not pass as "not a POST".
                if !matches!(
                    *request.method(),
                    Method::GET | Method::POST | Method::DELETE
                ) {
                    let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET, POST or DELETE");
                    r.headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
                    return r;
                }
                if !self.origins.permits(request.headers()) {
                    log.reason = Some("origin_not_allowed");
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
                if self.config.observability.audit.enabled {
                    log.oid = principal.oid.clone();
                    log.tenant = principal.tenant.clone();
                }
                log.anonymous = self.auth.is_none();
                if let Some(limits) = &self.rate_limits
                    && let Err(refusal) =
                        limits.check_caller(&self.rate_key(&principal, log.client))
                {
                    return self.rate_limited(refusal, log);
                }
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
            Ok(collected) => {
                log.body_read = true;
                collected.to_bytes()
            }
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
            }
            Err(_) => return plain(StatusCode::BAD_REQUEST, "could not read the request body"),
        };
        // Audit records follow the body: the headers are the client's to say anything in.
        let peek = if self.config.observability.audit.enabled {
            mcp_peek::of_body(&body)
        } else {
            mcp_peek::peek(&parts.headers, &body)
        };
        log.mcp_method = peek.method;
        log.mcp_name = peek.name;
        let lists_tools = match self.check_tools(route, &principal, &parts, &body, log) {
            Ok(lists_tools) => lists_tools,
            Err(refusal) => return *refusal,
        };

        let mut headers = parts.headers;
        // Before the gateway adds its own headers: a client's `Connection: <name>` must not
        // remove them on the way out.
        forward::remove_hop_by_hop(&mut headers);
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
                None => {
                    log.reason = Some("session_not_found");
                    return session_not_found();
                }
            }
        }
        // Only the gateway names the caller: a client's header of that name never passes.
        headers.remove(DEFAULT_CALLER_IDENTITY_HEADER);
        if let Some((header, keys)) = &self.caller_identity {
            headers.remove(header);
            let identity = self
                .config
                .caller_identity
                .as_ref()
                .expect("set with the keys");
            let assertion = keys.current().assert(
                &principal,
                &self.config.issuer_url(),
                &self.upstream_origin,
                unix_now(),
                identity.ttl_seconds.into(),
            );
            if let Ok(mut value) = HeaderValue::from_str(&assertion) {
                value.set_sensitive(true);
                headers.insert(header.clone(), value);
            }
        }
        let path = route.upstream_path(&self.config).expect("upstream route");
        let query = match route {
            // Legacy SSE messages carry the sealed query from the endpoint event: only the
            // subject that opened the stream can post to it.
            Route::Message => match self.open_message_query(&principal, parts.uri.query()) {
                Some(query) => query,
                None => {
                    log.reason = Some("session_not_found");
                    return session_not_found();
                }
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
        let span = log.span.clone();
        let mut pending: long_call::Pending = Box::pin(async move {
            gateway
                .send(&parts.method, &uri, &headers, &sent_body, span.as_ref())
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
                        // The line says the stream opened; the span and the audit records
                        // wait for the answer.
                        let deferred = log.clone();
                        log.deferred = true;
                        let audit = self.config.observability.audit.clone();
                        let finish = move |status, reason: Option<&'static str>| {
                            let mut deferred = deferred;
                            deferred.reason = reason;
                            deferred.finish(status, started.elapsed(), &audit);
                        };
                        return long_call::respond(
                            pending,
                            id,
                            options,
                            self.metrics.clone(),
                            started.into(),
                            long_call::LogContext {
                                request_id: log.request_id.clone(),
                                finish: Some(Box::new(finish)),
                            },
                            self.tools_view(&principal, lists_tools),
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
        self.client_response(route, &principal, upstream, lists_tools)
    }

    /// Per-tool authorization of a POSTed body: `Ok(lists_tools)` when every `tools/call` in
    /// it is allowed, else the refusal (it never reaches the upstream).
    fn check_tools(
        self: &Arc<Self>,
        route: Route,
        principal: &Principal,
        parts: &http::request::Parts,
        body: &Bytes,
        log: &mut RequestLog,
    ) -> Result<bool, Box<Response<Body>>> {
        let tool_limits = self.rate_limits.as_ref().filter(|l| l.limits_tools());
        // Audit records name every call: a single message's the peek found, a batch's or
        // their arguments only a full read finds.
        let audit = &self.config.observability.audit;
        let audit_needs_read = audit.enabled
            && (audit.include_arguments && log.mcp_method.as_deref() == Some("tools/call")
                || log.mcp_method.is_none() && looks_like_batch(body));
        // Any body is read, whatever the method: what the host does with one is its affair.
        if (self.tool_access.is_none() && tool_limits.is_none() && !audit_needs_read)
            || body.is_empty()
        {
            return Ok(false);
        }
        let Ok(requests) = tool_requests::read(body) else {
            log.reason = Some("unreadable_json_rpc");
            return Err(Box::new(plain(
                StatusCode::BAD_REQUEST,
                "the request body is not a JSON-RPC message the gateway can read",
            )));
        };
        // MCP 2026: a server must refuse a body that disagrees with its Mcp-Name header; the
        // gateway decides on the body and so refuses the disagreement itself.
        let mut header_names = parts.headers.get_all("mcp-name").iter();
        let header_name = header_names.next().map(HeaderValue::as_bytes);
        if header_names.next().is_some() {
            log.reason = Some("tool_name_mismatch");
            return Err(Box::new(plain(
                StatusCode::BAD_REQUEST,
                "the request has more than one Mcp-Name header",
            )));
        }
        if audit.enabled {
            log.tools = requests
                .calls
                .iter()
                .map(|c| ToolRecord {
                    name: mcp_peek::clip(&c.name),
                    arguments: audit
                        .include_arguments
                        .then(|| c.arguments.clone())
                        .flatten(),
                })
                .collect();
        }
        let has_scope = |s: &str| self.grants(principal, s);
        for call in &requests.calls {
            if header_name.is_some_and(|h| h != call.name.as_bytes()) {
                log.reason = Some("tool_name_mismatch");
                return Err(Box::new(plain(
                    StatusCode::BAD_REQUEST,
                    "the Mcp-Name header does not name the tool the body calls",
                )));
            }
            if let Some(limits) = tool_limits
                && let Err(refusal) =
                    limits.check_tool(&self.rate_key(principal, log.client), &call.name)
            {
                return Err(Box::new(self.rate_limited(refusal, log)));
            }
            let Some(access) = &self.tool_access else {
                continue;
            };
            let decision = access.decide(&call.name, principal, &has_scope);
            self.metrics
                .tool_calls
                .get_or_create(&crate::metrics::ToolCall {
                    rule: decision.matched.to_string(),
                    decision: decision.verdict.label(),
                })
                .inc();
            match decision.verdict {
                Verdict::Allowed => {}
                Verdict::NeedsScopes(needed) => {
                    log.reason = Some("tool_needs_scope");
                    let mut scopes = self.required_scopes.clone();
                    scopes.extend(
                        needed
                            .into_iter()
                            .filter(|s| !self.required_scopes.contains(s)),
                    );
                    let challenge = auth::challenge(
                        &self.config.resource_metadata_url(),
                        &scopes,
                        Some(&AuthError::InsufficientScope),
                    );
                    let mut refusal = plain(StatusCode::FORBIDDEN, "insufficient scope");
                    refusal
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, challenge);
                    return Err(Box::new(refusal));
                }
                Verdict::Denied => {
                    log.reason = Some("tool_denied");
                    let single = route == Route::Mcp && !requests.batch;
                    let error = serde_json::json!({
                        "jsonrpc": "2.0",
                        "id": if single { call.id.clone() } else { serde_json::Value::Null },
                        "error": {
                            "code": TOOL_FORBIDDEN,
                            "message": format!("the gateway does not let this caller call the tool {:?}", call.name),
                        },
                    });
                    // One call on Streamable HTTP: an answer the client shows as the tool's
                    // error. A batch, or a legacy SSE post (answered on its stream): refused.
                    let status = if single {
                        StatusCode::OK
                    } else {
                        StatusCode::FORBIDDEN
                    };
                    return Err(Box::new(response::json(status, error.to_string())));
                }
            }
        }
        Ok(requests.lists_tools)
    }

    /// Whose bucket a request counts in: the subject, or without client authentication the
    /// caller's address (behind an Ingress, the controller's: one bucket for all callers).
    fn rate_key(&self, principal: &Principal, client: Option<std::net::IpAddr>) -> String {
        match (&self.auth, client) {
            (None, Some(addr)) => format!("ip:{addr}"),
            _ => format!("sub:{}", principal.subject),
        }
    }

    fn rate_limited(&self, refusal: rate_limit::Refusal, log: &mut RequestLog) -> Response<Body> {
        log.reason = Some("rate_limited");
        self.metrics
            .rate_limited
            .get_or_create(&crate::metrics::Limit {
                limit: refusal.limit,
            })
            .inc();
        let mut r = plain(
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit exceeded; retry later",
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(rate_limit::retry_after_seconds(refusal.retry_after)),
        );
        r
    }

    fn grants(&self, principal: &Principal, scope: &str) -> bool {
        self.auth
            .as_ref()
            .is_some_and(|a| a.grants(principal, scope))
    }

    /// What the caller may see of tool lists: `None` without per-tool rules.
    fn tools_view(self: &Arc<Self>, principal: &Principal, lists_tools: bool) -> Option<ToolsView> {
        self.tool_access.as_ref()?;
        let (gateway, principal) = (Arc::clone(self), principal.clone());
        Some(ToolsView {
            visible: Box::new(move |tool: &str| {
                let access = gateway.tool_access.as_ref().expect("checked above");
                access.allows(tool, &principal, &|s| gateway.grants(&principal, s))
            }),
            lists_tools,
        })
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
        span: Option<&RequestSpan>,
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
            let attempt = span.map(|s| s.upstream_attempt(method, uri, request.headers_mut()));
            let response =
                match tokio::time::timeout(self.response_timeout, self.client.request(request))
                    .await
                {
                    Err(_) => {
                        if let Some(a) = attempt {
                            a.failed("timeout");
                        }
                        return Err(UpstreamFailure::Timeout);
                    }
                    Ok(Err(error)) => {
                        let (cause, detail) = upstream::cause(&error);
                        if let Some(a) = attempt {
                            a.failed(cause);
                        }
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
            if let Some(a) = attempt {
                a.answered(status.as_u16());
            }
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
        self: &Arc<Self>,
        route: Route,
        principal: &Principal,
        upstream: Response<Incoming>,
        lists_tools: bool,
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
        let rewriter: Option<Box<dyn body::Transform>> = rewriter.map(|r| Box::new(r) as _);
        // Tool lists come in the POST's response (Streamable HTTP), as JSON or events, or on
        // the legacy SSE stream; any event stream may carry one.
        let filter = self
            .tools_view(principal, lists_tools)
            .and_then(|view| view.filter(event_stream));
        // The gateway asks for no encoding; a compressed body it must filter is refused, not
        // passed unread.
        if filter.is_some()
            && parts
                .headers
                .get(header::CONTENT_ENCODING)
                .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"))
        {
            tracing::warn!(
                "the MCP server compressed a response the gateway must filter for tools/list"
            );
            return plain(
                StatusCode::BAD_GATEWAY,
                "the MCP server's response is compressed and cannot be filtered",
            );
        }
        let rewriter = match (rewriter, filter) {
            (Some(r), Some(f)) => Some(Box::new(body::Chain(r, f)) as _),
            (r, f) => r.or(f),
        };
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
            oid: None,
            name: None,
            scopes: Vec::new(),
            roles: Vec::new(),
            groups: Vec::new(),
            groups_overage: false,
            expires_at: u64::MAX,
        }
    }
}

/// Whether a body is a JSON array (a JSON-RPC batch), by its first non-blank byte.
fn looks_like_batch(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'[')
}

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    UpstreamTls(#[from] UpstreamTlsError),
    #[error("observability.tracing: {0}")]
    Tracing(String),
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn session_not_found() -> Response<Body> {
    response::json(
        StatusCode::NOT_FOUND,
        r#"{"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":null}"#,
    )
}
