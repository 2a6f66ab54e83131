//! The build step: settings' text (from `layers`) into the typed sections of `Config`, one
//! named step a section, each error naming its setting. Pure but for reading the key, keyset
//! and token files the settings name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pingora::server::configuration::ServerConf;

use super::error::{err, key_err, ConfigError};
use super::layers::Raw;
use super::settings::{
    Setting as S, MAX_SHUTDOWN_DELAY_SECS, MAX_TTL_SECS, MIN_STATUS_TOKEN_CHARS, USER_DEFAULT_NONE,
};
use super::{Config, UpstreamUrl};
use crate::http::identity::{check_user, UserSource};
use crate::observe::redact::NEVER_SHOWN;
use crate::pingora_limits::{DEFAULT_GRACE_SECS, MAX_HEADER_BYTES};
use crate::signing::key::{
    Key, KeyEncoding, PrivateKey, MIN_BEARER_KEY_BYTES, MIN_SIGNING_KEY_BYTES,
};
use crate::signing::keyset::{self, Keyset};
use crate::signing::minting::TokenSettings;
use crate::signing::ring::{RotationSettings, RETIRE_LEEWAY_SECS};
use crate::signing::KeyConfig;

/// The signing keys as configured, before the rotation rules join them.
struct Signing {
    set: Keyset,
    /// `JWT_KEYS`, absolute.
    path: Option<PathBuf>,
    encoding: KeyEncoding,
    /// The one HMAC key of a `JWT_SECRET*` configuration (a bearer key by default).
    secret: Option<Key>,
}

/// The key that verifies inbound bearer tokens.
struct Bearer {
    key: Option<Key>,
    is_signing_key: bool,
}

/// Where the proxy and the status service listen, and who may read the status service.
struct Listeners {
    listen: SocketAddr,
    status_listen: SocketAddr,
    status_token: Option<String>,
}

impl Raw {
    /// The whole configuration, section by section (in this order, which decides the error
    /// reported when several settings are wrong).
    pub(super) fn into_config(self, server: ServerConf) -> Result<Config, ConfigError> {
        let signing = self.signing()?;
        let bearer = self.bearer(signing.secret.clone())?;
        let ttl = self.ttl()?;
        let (user_source, user_default) = self.identity()?;
        let upstream = UpstreamUrl::parse(self.get(S::UpstreamUrl).trim())
            .map_err(|p| err(S::UpstreamUrl, p))?;
        let access_log = self.access_log()?;
        if user_source == UserSource::Bearer && bearer.key.is_none() {
            return Err(err(
                S::BearerSecret,
                "USER_SOURCE=bearer with JWT_KEYS needs BEARER_SECRET_FILE (or BEARER_SECRET): \
                 the key that verifies client tokens",
            ));
        }
        let keys = self.key_config(signing, ttl)?;
        let token = self.token(ttl)?;
        let listeners = self.listeners()?;
        let max_body_bytes = self.max_body_bytes()?;
        let upstream_timeout = self.millis(S::UpstreamTimeoutMs)?;
        let drain_idle = Duration::from_secs(self.secs(S::DrainIdleSecs)?);
        check_grace(&server, upstream_timeout, drain_idle)?;
        let shutdown_delay = self.shutdown_delay()?;
        Ok(Config {
            shadowed_by_env: self.1.iter().map(|s| s.name()).collect(),
            listen: listeners.listen,
            status_listen: listeners.status_listen,
            status_token: listeners.status_token,
            status_show_headers: self.header_list(S::StatusShowHeaders)?,
            upstream,
            keys,
            bearer_key: bearer.key,
            bearer_key_is_signing_key: bearer.is_signing_key,
            token,
            user_source,
            user_default,
            max_body_bytes,
            connect_timeout: self.millis(S::UpstreamConnectTimeoutMs)?,
            upstream_timeout,
            max_upstream_header_bytes: self.within(
                S::MaxUpstreamHeaderBytes,
                "a whole number of bytes",
                1024,
                MAX_HEADER_BYTES,
            )?,
            access_log,
            status_recent: self.within(S::StatusRecent, "a whole number", 1, 10_000)?,
            status_recent_bytes: self.within(
                S::StatusRecentBytes,
                "a whole number of bytes",
                65_536,
                67_108_864,
            )?,
            client_keepalive_secs: self.secs(S::ClientKeepaliveSecs)?,
            client_header_timeout: self.millis(S::ClientHeaderTimeoutMs)?,
            client_body_timeout: self.millis(S::ClientBodyTimeoutMs)?,
            max_header_bytes: self.max_header_bytes()?,
            drain_idle,
            shutdown_delay,
            server,
        })
    }

    /// `JWT_KEYS` (a keyset) or one HMAC key (`JWT_SECRET*`, `JWT_KID`), or the demo key when
    /// asked for.
    fn signing(&self) -> Result<Signing, ConfigError> {
        let encoding = self.encoding(S::JwtSecretEncoding)?;
        let secret = self.key(
            S::JwtSecret,
            S::JwtSecretFile,
            encoding,
            MIN_SIGNING_KEY_BYTES,
            "HS512",
        )?;
        // Absolute (daemon mode changes directory to /), symbolic links kept: a reload must
        // follow a `..data` swap, not the target the link had at start.
        let path = match self.opt(S::JwtKeys) {
            Some(p) => Some(std::path::absolute(&p).map_err(|e| err(S::JwtKeys, e.to_string()))?),
            None => None,
        };
        let (set, secret) = match (&path, secret) {
            (Some(_), Some(_)) => {
                return Err(err(
                    S::JwtKeys,
                    "set either JWT_KEYS (a keyset) or JWT_SECRET_FILE/JWT_SECRET (one key), \
                     not both",
                ))
            }
            (Some(_), None) if self.opt(S::JwtKid).is_some() => {
                return Err(err(
                    S::JwtKid,
                    "with JWT_KEYS each key's kid is in the keyset file; remove JWT_KID",
                ))
            }
            (Some(path), None) => (keyset::load(path).map_err(|p| err(S::JwtKeys, p))?, None),
            (None, secret) => {
                let key =
                    match secret {
                        Some(k) => k,
                        None if self.flag(S::JwtDemoKey)? => Key::demo(),
                        None => return Err(err(
                            S::JwtSecret,
                            "no signing key is configured: set JWT_SECRET_FILE (or JWT_SECRET) \
                             to your key, JWT_KEYS to a keyset, or JWT_DEMO_KEY=true to run a \
                             demo with the public demo key",
                        )),
                    };
                let kid = self.opt(S::JwtKid);
                if let Some(k) = &kid {
                    keyset::check_kid(k).map_err(|p| err(S::JwtKid, p))?;
                }
                (
                    Keyset::single(PrivateKey::Hs512(key.clone()), kid),
                    Some(key),
                )
            }
        };
        self.flag(S::JwtDemoKey)?;
        Ok(Signing {
            set,
            path,
            encoding,
            secret,
        })
    }

    /// `BEARER_SECRET*`, else the signing key of a `JWT_SECRET*` configuration.
    fn bearer(&self, signing_secret: Option<Key>) -> Result<Bearer, ConfigError> {
        let encoding = self.encoding(S::BearerSecretEncoding)?;
        let own = self.key(
            S::BearerSecret,
            S::BearerSecretFile,
            encoding,
            MIN_BEARER_KEY_BYTES,
            "HS256",
        )?;
        Ok(Bearer {
            is_signing_key: own.is_none(),
            key: own.or(signing_secret),
        })
    }

    /// `JWT_TTL_SECS`: at most a year.
    fn ttl(&self) -> Result<u64, ConfigError> {
        let ttl = self.num::<u64>(S::JwtTtlSecs, "a whole number of seconds")?;
        if ttl > MAX_TTL_SECS {
            return Err(err(
                S::JwtTtlSecs,
                format!("{ttl} is more than one year ({MAX_TTL_SECS})"),
            ));
        }
        Ok(ttl)
    }

    /// `USER_SOURCE` and `USER_DEFAULT`.
    fn identity(&self) -> Result<(UserSource, Option<String>), ConfigError> {
        let source =
            UserSource::parse(self.get(S::UserSource)).map_err(|p| err(S::UserSource, p))?;
        let default = self.opt(S::UserDefault).filter(|d| d != USER_DEFAULT_NONE);
        if let Some(d) = &default {
            check_user(d).map_err(|r| err(S::UserDefault, r.message()))?;
        }
        Ok((source, default))
    }

    /// The keys and the rules of their rotation: tokens that expire with a keyset (keys retire
    /// by them), the JWKS' max-age and the publish lead.
    fn key_config(&self, signing: Signing, ttl: u64) -> Result<KeyConfig, ConfigError> {
        if signing.path.is_some() && ttl == 0 {
            return Err(err(
                S::JwtTtlSecs,
                "JWT_KEYS needs tokens that expire (JWT_TTL_SECS at least 1): a removed key is \
                 retired once the tokens it signed have expired",
            ));
        }
        let jwks_max_age_secs =
            self.within(S::JwtJwksMaxAgeSecs, "a whole number of seconds", 0, 86_400)?;
        let publish_lead_secs = match self.opt(S::JwtKeyPublishLeadSecs) {
            None => 2 * jwks_max_age_secs,
            Some(_) => self.within(
                S::JwtKeyPublishLeadSecs,
                "a whole number of seconds",
                0,
                30 * 86_400,
            )?,
        };
        if publish_lead_secs < jwks_max_age_secs {
            return Err(err(
                S::JwtKeyPublishLeadSecs,
                format!(
                    "{publish_lead_secs} is less than JWT_JWKS_MAX_AGE_SECS \
                     ({jwks_max_age_secs}): a verifier's cached JWKS could miss a key that signs"
                ),
            ));
        }
        Ok(KeyConfig {
            set: signing.set,
            path: signing.path,
            encoding: signing.encoding,
            rotation: RotationSettings {
                publish_lead_secs,
                retire_after_secs: ttl + RETIRE_LEEWAY_SECS,
            },
            jwks_max_age_secs,
        })
    }

    /// The claims every token carries besides the identity.
    fn token(&self, ttl: u64) -> Result<TokenSettings, ConfigError> {
        let nbf_skew_secs = match self.opt(S::JwtNbfSkewSecs) {
            None => None,
            Some(_) => {
                Some(self.within(S::JwtNbfSkewSecs, "a whole number of seconds", 0, 3_600)?)
            }
        };
        Ok(TokenSettings {
            ttl_secs: (ttl > 0).then_some(ttl),
            issuer: self.opt(S::JwtIssuer),
            audience: self.opt(S::JwtAudience),
            nbf_skew_secs,
        })
    }

    /// The two listen addresses (not the same port on overlapping addresses), and the status
    /// token, required beyond loopback.
    fn listeners(&self) -> Result<Listeners, ConfigError> {
        let listen = SocketAddr::new(self.addr(S::ListenAddr)?, self.port(S::HttpPort)?);
        let status_listen = SocketAddr::new(self.addr(S::StatusAddr)?, self.port(S::StatusPort)?);
        let overlap = listen.ip() == status_listen.ip()
            || listen.ip().is_unspecified()
            || status_listen.ip().is_unspecified();
        if listen.port() == status_listen.port() && overlap {
            return Err(err(
                S::StatusPort,
                format!(
                    "{} is also the proxy's port (HTTP_PORT) on an overlapping address",
                    status_listen.port()
                ),
            ));
        }
        let status_token = self.status_token()?;
        if status_token.is_none() && !status_listen.ip().is_loopback() {
            return Err(err(
                S::StatusToken,
                format!(
                    "the status service listens on {}, beyond loopback, and shows request \
                     metadata: set STATUS_TOKEN_FILE (or STATUS_TOKEN) to a secret of at least \
                     {MIN_STATUS_TOKEN_CHARS} characters, or set STATUS_ADDR to 127.0.0.1",
                    status_listen.ip()
                ),
            ));
        }
        Ok(Listeners {
            listen,
            status_listen,
            status_token,
        })
    }

    fn access_log(&self) -> Result<bool, ConfigError> {
        match self.get(S::AccessLog).trim() {
            "stdout" => Ok(true),
            "off" => Ok(false),
            v => Err(err(
                S::AccessLog,
                format!("{v:?} is not one of stdout, off"),
            )),
        }
    }

    fn max_body_bytes(&self) -> Result<u64, ConfigError> {
        match self.num::<u64>(S::MaxBodyBytes, "a whole number of bytes")? {
            0 => Err(err(
                S::MaxBodyBytes,
                "must be at least 1 (0 would refuse every body)",
            )),
            n => Ok(n),
        }
    }

    fn max_header_bytes(&self) -> Result<usize, ConfigError> {
        match self.num::<usize>(S::MaxHeaderBytes, "a whole number of bytes")? {
            n if n < 1024 => Err(err(S::MaxHeaderBytes, "must be at least 1024")),
            n if n > MAX_HEADER_BYTES => Err(err(
                S::MaxHeaderBytes,
                format!("must be at most {MAX_HEADER_BYTES} (Pingora's own limit)"),
            )),
            n => Ok(n),
        }
    }

    fn shutdown_delay(&self) -> Result<Duration, ConfigError> {
        match self.num::<u64>(S::ShutdownDelaySecs, "a whole number of seconds")? {
            n if n > MAX_SHUTDOWN_DELAY_SECS => Err(err(
                S::ShutdownDelaySecs,
                format!("{n} s is more than {MAX_SHUTDOWN_DELAY_SECS} s"),
            )),
            n => Ok(Duration::from_secs(n)),
        }
    }

    /// A key from `file` (wins) or `text`, decoded under `encoding`, at least `min` bytes;
    /// `None` when neither is set.
    fn key(
        &self,
        text: S,
        file: S,
        encoding: KeyEncoding,
        min: usize,
        alg: &str,
    ) -> Result<Option<Key>, ConfigError> {
        let (key, from) = match self.opt(file) {
            Some(path) => (
                Key::from_file(Path::new(&path), encoding).map_err(|p| err(file, p))?,
                file,
            ),
            None => match self.get(text) {
                "" => return Ok(None),
                secret => (
                    Key::decode(secret, encoding).map_err(|p| {
                        err(
                            text,
                            format!("the key {p} (encoding {})", encoding.as_str()),
                        )
                    })?,
                    text,
                ),
            },
        };
        if key.len() < min {
            return Err(err(
                from,
                format!(
                    "the key is {} bytes (encoding {}); {alg} needs at least {min} (RFC 7518 \
                     section 3.2): generate one with `openssl rand -hex {min}` and \
                     {}_ENCODING=hex",
                    key.len(),
                    encoding.as_str(),
                    text.name()
                ),
            ));
        }
        Ok(Some(key))
    }

    fn status_token(&self) -> Result<Option<String>, ConfigError> {
        let (token, from) = match self.opt(S::StatusTokenFile) {
            Some(path) => (
                crate::os::read_secret_file(Path::new(&path))
                    .map_err(|p| err(S::StatusTokenFile, p))?
                    .trim()
                    .to_string(),
                S::StatusTokenFile,
            ),
            None => match self.opt(S::StatusToken) {
                Some(t) => (t, S::StatusToken),
                None => return Ok(None),
            },
        };
        if token.chars().count() < MIN_STATUS_TOKEN_CHARS {
            return Err(err(
                from,
                format!(
                    "the token is {} characters; at least {MIN_STATUS_TOKEN_CHARS} are needed",
                    token.chars().count()
                ),
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(err(
                from,
                "the token must be printable ASCII without spaces (it is sent as \
                 `Authorization: Bearer <token>`)",
            ));
        }
        Ok(Some(token))
    }

    fn header_list(&self, s: S) -> Result<Vec<String>, ConfigError> {
        let mut out: Vec<String> = Vec::new();
        for item in self.get(s).split(',') {
            let name = item.trim().to_ascii_lowercase();
            if name.is_empty() {
                continue;
            }
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(err(s, format!("{:?} is not a header name", item.trim())));
            }
            if NEVER_SHOWN.contains(&name.as_str()) {
                return Err(err(
                    s,
                    format!("{name} carries secrets; its value is always redacted"),
                ));
            }
            if !out.contains(&name) {
                out.push(name);
            }
        }
        Ok(out)
    }
}

/// The grace period must let a request in flight at a stop or upgrade finish, and outlast the
/// time idle connections are kept open while draining.
fn check_grace(
    server: &ServerConf,
    upstream_timeout: Duration,
    drain_idle: Duration,
) -> Result<(), ConfigError> {
    let grace = server.grace_period_seconds.unwrap_or(DEFAULT_GRACE_SECS);
    let need = (upstream_timeout.as_millis() as u64).div_ceil(1000) + 1;
    if grace < need {
        return Err(key_err(
            "grace_period_seconds",
            format!(
                "{grace} s is too short: requests in flight at a stop or upgrade must be able \
                 to finish within the grace period, and UPSTREAM_TIMEOUT_MS ({} ms) lets the \
                 upstream take that long, so it must be at least {need}",
                upstream_timeout.as_millis()
            ),
        ));
    }
    if grace < drain_idle.as_secs() {
        return Err(key_err(
            "grace_period_seconds",
            format!(
                "{grace} s is shorter than DRAIN_IDLE_SECS ({} s): idle connections are kept \
                 open that long after a stop or upgrade begins, within the grace period",
                drain_idle.as_secs()
            ),
        ));
    }
    Ok(())
}
