//! Client authentication: the gateway as an OAuth 2.1 resource server. Bearer JWTs from one
//! OIDC issuer are verified against its JWKS (by `kid`, with an algorithm allow-list derived
//! from the key), then `iss`, `aud`, `exp`/`nbf`, tenant and scopes are checked.
//!
//! - `token`: header parsing and claim checks (pure).
//! - `jwks`: key fetching and key/algorithm selection.
//! - `challenge`: the `WWW-Authenticate` header.
//! - `error`: [`AuthError`] and its closed set of reasons.
//!
//! Nothing a client sends is logged or echoed: rejections are logged at debug with their
//! `reason()` only, and verified tokens are remembered under their SHA-256, not the token.

mod challenge;
mod error;
mod jwks;
mod token;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use moka::Expiry;
use sha2::{Digest, Sha256};

pub use challenge::challenge;
pub use error::{AuthError, reason};

use crate::backoff::Backoff;
use crate::config::OidcConfig;
use crate::metrics::{Metrics, Outcome};
use jwks::{Fetcher, KeySet, Selection, VerifyingKey};
use token::{Policy, TokenHeader};

/// Who a verified token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `<tid>/<oid>` for Entra tokens (stable across client apps), else `sub`.
    pub subject: String,
    /// `azp`, `appid` or `client_id`.
    pub client_id: Option<String>,
    /// Entra `tid`.
    pub tenant: Option<String>,
    /// Entra `oid`: the user's or service principal's object ID.
    pub oid: Option<String>,
    /// `name`, else `preferred_username`: for display only.
    pub name: Option<String>,
    /// The union of `scp`, `scope` and `roles`.
    pub scopes: Vec<String>,
    /// Entra app roles (`roles`) alone, for per-tool rules.
    pub roles: Vec<String>,
    /// Entra group object IDs (`groups`).
    pub groups: Vec<String>,
    /// Entra left the groups out (more than fit in a token: `hasgroups` or a `groups` claim
    /// source instead): a rule that needs a group cannot be decided from the token.
    pub groups_overage: bool,
    /// `exp`, unix seconds.
    pub expires_at: u64,
}

/// How often the JWKS is refreshed in the background.
const REFRESH_INTERVAL: Duration = Duration::from_secs(600);
/// The least time between two fetches caused by tokens naming an unknown key.
const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Verified tokens remembered.
const VERIFIED_CAPACITY: u64 = 10_000;

/// Validates bearer tokens. Share it through an `Arc`; [`Authenticator::start`] keeps the
/// keys fresh.
pub struct Authenticator {
    policy: Policy,
    max_token_bytes: usize,
    metrics: Arc<Metrics>,
    fetcher: Fetcher,
    /// The last good key set; `None` until the first successful fetch.
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Serializes fetches and remembers when the last one started (the refetch rate limit).
    fetching: tokio::sync::Mutex<Option<Instant>>,
    /// SHA-256 of a token → its principal, each entry expiring at the token's `exp`.
    verified: moka::sync::Cache<[u8; 32], Arc<Principal>>,
    refresh_interval: Duration,
    refetch_interval: Duration,
    /// Signature verifications performed (the cost the cache saves).
    signature_checks: AtomicU64,
}

impl Authenticator {
    pub fn new(config: OidcConfig, max_token_bytes: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            policy: Policy::new(&config),
            max_token_bytes,
            metrics,
            fetcher: Fetcher::new(&config.issuer, config.jwks_uri.clone()),
            keys: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(None),
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_CAPACITY)
                .expire_after(UntilExp)
                .build(),
            refresh_interval: REFRESH_INTERVAL,
            refetch_interval: REFETCH_INTERVAL,
            signature_checks: AtomicU64::new(0),
        }
    }

    /// An authenticator for tokens signed with keys it already holds (the facade's own):
    /// nothing to fetch, ready at once. `jwks` is a JWKS document.
    pub fn with_keys(
        config: OidcConfig,
        jwks: &str,
        max_token_bytes: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let keys = KeySet::parse(jwks.as_bytes())?;
        let mut auth = Self::new(config, max_token_bytes, metrics);
        auth.keys = RwLock::new(Some(Arc::new(keys)));
        // Never fetch: a token naming an unknown key is simply refused.
        auth.fetching = tokio::sync::Mutex::new(Some(Instant::now()));
        auth.refetch_interval = Duration::MAX;
        Ok(auth)
    }

    /// Fetches the keys in the background (discovery first unless `jwksUri` is set), retrying
    /// with backoff until it works, then refreshes them every 10 minutes. Never blocks; the
    /// task ends at its next wake-up once the last `Arc` to the authenticator is dropped (abort
    /// the handle to stop it sooner).
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut retries = Backoff::fetch_retries().start();
            loop {
                let Some(auth) = this.upgrade() else { return };
                let delay = if auth.refresh().await {
                    retries.reset();
                    auth.refresh_interval
                } else {
                    retries.next_delay().min(auth.refresh_interval)
                };
                drop(auth);
                tokio::time::sleep(delay).await;
            }
        })
    }

    /// The issuer's discovery document (shared with the facade, which needs its endpoints).
    pub(crate) async fn discovery(&self) -> Result<Arc<crate::discovery::Discovery>, String> {
        self.fetcher.discovery().await
    }

    /// Whether a key set has been fetched at least once (for `/readyz`).
    pub fn ready(&self) -> bool {
        self.current_keys().is_some()
    }

    /// Whether the caller's token grants `scope`, by the rule `requiredScopes` are held to
    /// (Entra's short scope names count for this resource's full ones).
    pub fn grants(&self, principal: &Principal, scope: &str) -> bool {
        self.policy.granted(scope, &principal.scopes)
    }

    /// Validates the `Authorization` header value. The caller counts failures in
    /// `auth_failures` by `reason()` and answers with `status()` and [`challenge`].
    pub async fn authenticate(
        &self,
        authorization: Option<&HeaderValue>,
    ) -> Result<Principal, AuthError> {
        let result = self.verify(authorization).await;
        if let Err(error) = &result {
            tracing::debug!(reason = error.reason(), "access token refused");
        }
        result
    }

    async fn verify(&self, authorization: Option<&HeaderValue>) -> Result<Principal, AuthError> {
        let token = token::bearer(authorization, self.max_token_bytes)?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(principal) = self.verified.get(&digest) {
            // moka's expiry is rounded to whole seconds; never serve at or past `exp`.
            if principal.expires_at > unix_now() {
                return Ok(Principal::clone(&principal));
            }
            self.verified.invalidate(&digest);
        }
        let header = token::read_header(token)?;
        let key = self.key_for(&header).await?;
        self.signature_checks.fetch_add(1, Ordering::Relaxed);
        let principal = self.policy.verify(token, &header, &key.key)?;
        if principal.expires_at > unix_now() {
            self.verified.insert(digest, Arc::new(principal.clone()));
        }
        Ok(principal)
    }

    /// The key for a token, refetching the JWKS (rate limited) when the token names a key
    /// not in the cached set: the IdP may have rotated keys since the last refresh.
    async fn key_for(&self, header: &TokenHeader) -> Result<Arc<VerifyingKey>, AuthError> {
        let kid = header.kid.as_deref();
        let before = self.current_keys();
        match before.as_ref().map(|keys| keys.select(kid, header.alg)) {
            Some(Selection::Key(key)) => return Ok(key),
            Some(Selection::DisallowedAlg) => {
                return Err(AuthError::InvalidToken(reason::DISALLOWED_ALG));
            }
            Some(Selection::Unknown) | None => {}
        }
        {
            let mut last = self.fetching.lock().await;
            // Fetch only if nobody installed new keys while we waited, and not too often.
            let unchanged = match (&before, &self.current_keys()) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if unchanged && last.is_none_or(|at| at.elapsed() >= self.refetch_interval) {
                *last = Some(Instant::now());
                self.fetch_and_install().await;
            }
        }
        self.current_keys()
            .ok_or(AuthError::JwksUnavailable)?
            .select(kid, header.alg)
            .into_key()
    }

    /// One fetch now, whatever the rate limit. Returns whether it succeeded.
    async fn refresh(&self) -> bool {
        let mut last = self.fetching.lock().await;
        *last = Some(Instant::now());
        self.fetch_and_install().await
    }

    /// Puts `keys` in use.
    fn install(&self, keys: KeySet) {
        let keys = Arc::new(keys);
        let previous = self
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(keys.clone());
        // A token verified with a key the IdP has withdrawn must not outlive it here.
        if previous.is_some_and(|previous| keys.drops_any_of(&previous)) {
            self.verified.invalidate_all();
        }
    }

    /// Replaces the keys of an authenticator built [`with_keys`](Self::with_keys): the
    /// facade's, after its keys file changed. `jwks` is a JWKS document.
    pub fn replace_keys(&self, jwks: &str) -> Result<(), String> {
        self.install(KeySet::parse(jwks.as_bytes())?);
        Ok(())
    }

    /// Fetches the key set and installs it; on failure the cached keys stay in use.
    /// Callers hold `fetching`.
    async fn fetch_and_install(&self) -> bool {
        match self.fetcher.fetch().await {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "fetched the IdP's signing keys");
                self.install(keys);
                self.metrics
                    .jwks_refreshes
                    .get_or_create(&Outcome { outcome: "ok" })
                    .inc();
                true
            }
            Err(error) => {
                tracing::warn!(%error, "fetching the IdP's signing keys failed; keeping the cached keys");
                self.metrics
                    .jwks_refreshes
                    .get_or_create(&Outcome { outcome: "error" })
                    .inc();
                false
            }
        }
    }

    fn current_keys(&self) -> Option<Arc<KeySet>> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Token validation against a fixed JWKS: [`Authenticator`]'s checks (bearer extraction,
/// header, key and algorithm selection, signature, claims) without fetching, refetching or
/// caching. Pure and synchronous, for tests and fuzzing.
pub struct StaticVerifier {
    policy: Policy,
    max_token_bytes: usize,
    keys: KeySet,
}

impl StaticVerifier {
    /// `jwks` is read as a JWKS fetched from the IdP would be; the error says why it has no
    /// usable key.
    pub fn new(config: &OidcConfig, jwks: &[u8], max_token_bytes: usize) -> Result<Self, String> {
        Ok(Self {
            policy: Policy::new(config),
            max_token_bytes,
            keys: KeySet::parse(jwks)?,
        })
    }

    /// How many of the JWKS's keys are usable.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Validates the `Authorization` header value as [`Authenticator::authenticate`] does.
    pub fn verify(&self, authorization: Option<&HeaderValue>) -> Result<Principal, AuthError> {
        let token = token::bearer(authorization, self.max_token_bytes)?;
        let header = token::read_header(token)?;
        let key = self
            .keys
            .select(header.kid.as_deref(), header.alg)
            .into_key()?;
        self.policy.verify(token, &header, &key.key)
    }
}

/// Expires a verified token's cache entry at the token's `exp`.
struct UntilExp;

impl Expiry<[u8; 32], Arc<Principal>> for UntilExp {
    fn expire_after_create(
        &self,
        _digest: &[u8; 32],
        principal: &Arc<Principal>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(
            principal.expires_at.saturating_sub(unix_now()),
        ))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests;
