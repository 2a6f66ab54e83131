//! What the tools (`protected-echo`, `jwt-post`) verify our tokens with: a shared HS512 secret
//! and/or the JWKS at a URL. The set is fetched at start, again once its `Cache-Control:
//! max-age` has passed (so a key the proxy dropped stops verifying), and again when a token names
//! a kid it does not list or fails with a key it does (the kid may be a new key); at most once
//! per [`MIN_REFETCH`]. Blocking (it may fetch): async callers use a blocking task.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::signing::key::Key;
use crate::signing::verification::{TokenVerifier, VerifyError};

/// Fewest seconds between two fetches of the JWKS (a flood of unknown kids costs one per second).
const MIN_REFETCH: Duration = Duration::from_secs(1);
/// Largest JWKS document read.
const MAX_JWKS_BYTES: u64 = 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a set without `Cache-Control: max-age` is used.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Longest a set is used, whatever its server says (the proxy's own cap).
const MAX_MAX_AGE: Duration = Duration::from_secs(86_400);

pub struct JwksVerifier {
    secret: Option<Key>,
    url: Option<String>,
    current: RwLock<Arc<TokenVerifier>>,
    /// When the set was last fetched (tried), and until when it is fresh.
    last_fetch: Mutex<Option<Instant>>,
    fresh_until: Mutex<Option<Instant>>,
}

/// `max-age` of a `Cache-Control` value.
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|d| {
        let v = d.trim().strip_prefix("max-age=")?;
        v.trim_matches('"').parse().ok().map(Duration::from_secs)
    })
}

/// The JWKS document at `url`, and how long it may be used.
pub fn fetch(url: &str) -> Result<(String, Duration), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .call()
        .map_err(|e| format!("cannot fetch the JWKS at {url}: {e}"))?;
    let ttl = resp
        .headers()
        .get_all("cache-control")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(max_age)
        .unwrap_or(DEFAULT_MAX_AGE)
        .min(MAX_MAX_AGE);
    let text = resp
        .body_mut()
        .with_config()
        .limit(MAX_JWKS_BYTES)
        .read_to_string()
        .map_err(|e| format!("cannot read the JWKS at {url}: {e}"))?;
    Ok((text, ttl))
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
            fresh_until: Mutex::new(None),
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
        let (text, ttl) = fetch(url)?;
        let verifier = TokenVerifier::from_jwks_text(&text)?;
        self.install(verifier);
        *self.fresh_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + ttl);
        Ok(())
    }

    /// The claims of a token that verifies by its `kid` (fetching the JWKS again when it is
    /// stale, or for a kid it does not list or whose key refuses the token) or with the secret.
    pub fn verify(&self, token: &str) -> Result<Value, VerifyError> {
        if self.url.is_some() {
            let stale = self
                .fresh_until
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_none_or(|t| Instant::now() >= t);
            if stale {
                self.refetch_logged();
            }
        }
        match self.current().verify(token) {
            Err(VerifyError::UnknownKid(_) | VerifyError::Invalid(_)) if self.url.is_some() => {
                self.refetch_logged();
                self.current().verify(token)
            }
            other => other,
        }
    }

    fn refetch_logged(&self) {
        if let Err(e) = self.refetch() {
            log::debug!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=120"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(max_age("max-age=0"), Some(Duration::ZERO));
        assert_eq!(max_age("no-store"), None);
        assert_eq!(max_age("max-age=x"), None);
    }
}
