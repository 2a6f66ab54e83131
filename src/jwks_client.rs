//! What the tools (`protected-echo`, `jwt-post`) verify our tokens with: a shared HS512 secret
//! and/or the JWKS at a URL, fetched once and again when a token names a kid it does not list,
//! at most once per [`MIN_REFETCH`]. Blocking (it may fetch): async callers use a blocking task.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::keys::Key;
use crate::verification::{TokenVerifier, VerifyError};

/// Fewest seconds between two fetches of the JWKS (a flood of unknown kids costs one per second).
pub const MIN_REFETCH: Duration = Duration::from_secs(1);
/// Largest JWKS document read.
const MAX_JWKS_BYTES: u64 = 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

pub struct JwksVerifier {
    secret: Option<Key>,
    url: Option<String>,
    current: RwLock<Arc<TokenVerifier>>,
    last_fetch: Mutex<Option<Instant>>,
}

/// The JWKS document at `url`.
pub fn fetch(url: &str) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .call()
        .map_err(|e| format!("cannot fetch the JWKS at {url}: {e}"))?;
    resp.body_mut()
        .with_config()
        .limit(MAX_JWKS_BYTES)
        .read_to_string()
        .map_err(|e| format!("cannot read the JWKS at {url}: {e}"))
}

impl JwksVerifier {
    /// With a JWKS URL, fetches it now; a failure is reported (the caller decides) and the
    /// fetch is tried again at the first token.
    pub fn new(secret: Option<Key>, url: Option<String>) -> (JwksVerifier, Option<String>) {
        let v = JwksVerifier {
            secret,
            url,
            current: RwLock::new(Arc::new(TokenVerifier::default())),
            last_fetch: Mutex::new(None),
        };
        let problem = match &v.url {
            Some(_) => v.refetch().err(),
            None => {
                v.install(TokenVerifier::default());
                None
            }
        };
        (v, problem)
    }

    pub fn uses_jwks(&self) -> bool {
        self.url.is_some()
    }

    fn current(&self) -> Arc<TokenVerifier> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn install(&self, mut verifier: TokenVerifier) {
        if let Some(k) = &self.secret {
            verifier = verifier.with_secret(k);
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(verifier);
    }

    /// Fetch the JWKS again, unless fetched less than `MIN_REFETCH` ago. One fetch at a time:
    /// a caller that waited for another's fetch finds it recent and uses its result.
    fn refetch(&self) -> Result<(), String> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        let mut last = self.last_fetch.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < MIN_REFETCH) {
            return Err("the JWKS was fetched less than a second ago".into());
        }
        *last = Some(Instant::now());
        let text = fetch(url)?;
        let verifier = TokenVerifier::from_jwks_text(&text)?;
        self.install(verifier);
        Ok(())
    }

    /// The claims of a token that verifies by its `kid` (fetching the JWKS again for a kid it
    /// does not list) or with the secret.
    pub fn verify(&self, token: &str) -> Result<Value, VerifyError> {
        match self.current().verify(token) {
            Err(VerifyError::UnknownKid(kid)) if self.url.is_some() => {
                if let Err(e) = self.refetch() {
                    log::debug!("{e}");
                }
                match self.current().verify(token) {
                    Err(VerifyError::UnknownKid(_)) => Err(VerifyError::UnknownKid(kid)),
                    other => other,
                }
            }
            other => other,
        }
    }
}
