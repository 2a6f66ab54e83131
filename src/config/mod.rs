//! Every setting, read once at start: the YAML file (Pingora's server keys at the top level, ours
//! under `jwt_proxy:`), then environment variables over it, into one typed, validated `Config`.
//! Errors name the setting (by its environment variable name) and the problem.
//!
//! The steps, each in its own module: `settings` (the table), `layers` (default, file,
//! environment), `pingora` (Pingora's server settings), `build` (typed sections), then, outside
//! the pure part, `runtime` (directories and listen checks).

mod build;
pub mod error;
mod layers;
mod pingora;
mod runtime;
pub mod settings;
pub mod upstream_url;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ::pingora::server::configuration::ServerConf;

pub use error::{About, ConfigError};
pub use settings::{Setting, SETTINGS};
use settings::{DEFAULT_CONF_PATH, MAX_CONFIG_FILE_BYTES};
pub use upstream_url::UpstreamUrl;

use self::pingora::server_conf;
use crate::http::identity::UserSource;
use crate::signing::key::Key;
use crate::signing::minting::TokenSettings;
use crate::signing::KeyConfig;
use error::{file_err, key_err};
use layers::Raw;

/// The whole validated configuration.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub status_listen: SocketAddr,
    /// `STATUS_TOKEN`/`STATUS_TOKEN_FILE`: when set, `/status` and `/status.json` want
    /// `Authorization: Bearer <token>`. Required when `STATUS_ADDR` is not a loopback address.
    pub status_token: Option<String>,
    /// Request headers (lower case) whose values the status service shows; others are redacted.
    pub(crate) status_show_headers: Vec<String>,
    pub upstream: UpstreamUrl,
    /// The signing keys.
    pub keys: KeyConfig,
    /// Verifies inbound bearer tokens (`USER_SOURCE=bearer`): `BEARER_SECRET*`, else (with
    /// `JWT_SECRET*`) the signing key; `None` with `JWT_KEYS` and no `BEARER_SECRET*`.
    pub bearer_key: Option<Key>,
    /// No `BEARER_SECRET*` was given: `bearer_key` is the signing key.
    pub(crate) bearer_key_is_signing_key: bool,
    pub token: TokenSettings,
    pub user_source: UserSource,
    /// `None`: identity is required (401 without one).
    pub user_default: Option<String>,
    pub(crate) max_body_bytes: u64,
    pub connect_timeout: Duration,
    pub upstream_timeout: Duration,
    /// Largest upstream response head we accept.
    pub(crate) max_upstream_header_bytes: usize,
    pub access_log: bool,
    pub status_recent: usize,
    /// Byte budget of the status service's recent-requests ring.
    pub status_recent_bytes: usize,
    /// How long an idle client keep-alive connection is kept (Pingora's default: forever).
    pub client_keepalive_secs: u64,
    /// A request head (request line and headers) must arrive whole within this long of its
    /// first byte (of the connection, for the first request): slowloris protection.
    pub client_header_timeout: Duration,
    /// Longest wait for each read of a request body (Pingora's default: 60 s).
    pub(crate) client_body_timeout: Duration,
    /// Largest request head, request line and headers together (Pingora's own cap: 1 MiB).
    pub(crate) max_header_bytes: usize,
    /// After a stop or upgrade begins, idle client keep-alive connections stay open this long
    /// (their next request is answered with `Connection: close`), then they are closed.
    pub drain_idle: Duration,
    /// After SIGTERM, `/readyz` answers 503 and the listeners stay open this long before the
    /// drain begins, so a balancer probing readiness stops sending first.
    pub shutdown_delay: Duration,
    /// Pingora's own settings (threads, grace period, pid file, upgrade socket...).
    pub server: ServerConf,
    /// Settings the file gave a value that an environment variable replaced with another (a
    /// compose `environment:` entry silently beating the mounted file): said at start.
    pub(crate) shadowed_by_env: Vec<&'static str>,
}

impl Config {
    /// Read `path` (or `conf/jwt-proxy.yaml` when it exists, or nothing), then the environment.
    pub fn load(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let default = Path::new(DEFAULT_CONF_PATH);
        // An error names `-c` only when it was given.
        let named = if path.is_some() {
            "-c"
        } else {
            DEFAULT_CONF_PATH
        };
        let path = path.or_else(|| default.exists().then_some(default));
        let yaml = match path {
            // The one hardened reader: a FIFO is refused, not waited on; the size is bounded.
            Some(p) => crate::os::read_regular_file(p, MAX_CONFIG_FILE_BYTES)
                .map_err(|e| key_err(named, e.to_string()))?,
            None => String::new(),
        };
        Config::from_yaml(&yaml, env).map_err(|mut e| {
            if let (About::File(shown @ None), Some(p)) = (&mut e.about, path) {
                *shown = Some(p.display().to_string());
            }
            e
        })
    }

    /// Build from YAML text and an environment lookup (a closure, so tests need no real env).
    /// An environment variable set to the empty string (or only whitespace) counts as unset.
    pub fn from_yaml(
        yaml: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let doc: serde_yaml::Value = if yaml.trim().is_empty() {
            serde_yaml::Value::Mapping(Default::default())
        } else {
            serde_yaml::from_str(yaml).map_err(|e| file_err(format!("not valid YAML: {e}")))?
        };
        let serde_yaml::Value::Mapping(mut top) = doc else {
            return Err(file_err("the file must be a mapping of settings"));
        };
        let ours = top.remove("jwt_proxy");
        let raw = Raw::new(ours, env)?;
        let server = server_conf(top)?;
        raw.into_config(server)
    }

    /// What an operator should hear about at start (and from `-t`): the public demo key in use,
    /// bearer tokens checked with the signing key.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.keys.is_demo() {
            w.push(
                "the signing key is the PUBLIC DEMO KEY from the README: anyone can forge tokens; \
                 set JWT_SECRET_FILE (or JWT_SECRET) to your own key"
                    .to_string(),
            );
        }
        if self.user_source == UserSource::Bearer && self.bearer_key_is_signing_key {
            w.push(
                "USER_SOURCE=bearer verifies client tokens with the signing key, so whoever issues \
                 those tokens can also mint x-my-jwt tokens; set BEARER_SECRET_FILE (or \
                 BEARER_SECRET) to a key of its own"
                    .to_string(),
            );
        }
        for name in &self.shadowed_by_env {
            w.push(format!(
                "{name} from the environment overrides {} in the configuration file",
                name.to_ascii_lowercase()
            ));
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::pingora::{default_threads, server_keys};
    use crate::signing::key::PrivateKey;
    impl Config {
        /// The one HMAC key of a `JWT_SECRET*` configuration.
        fn hmac(&self) -> &Key {
            match self.keys.signing_key() {
                PrivateKey::Hs512(k) => k,
                other => panic!("not an HMAC key: {other:?}"),
            }
        }
    }

    use super::*;
    use crate::signing::key::DEMO_SECRET;

    /// An environment lookup with the given values; `JWT_DEMO_KEY=true` unless the test says
    /// otherwise, so that tests about other settings need no key.
    fn with_env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let mut map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.entry("JWT_DEMO_KEY".into()).or_insert("true".into());
        move |k| map.get(k).cloned()
    }

    /// Exactly these variables, nothing added.
    fn only_env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn ok(yaml: &str, env: &[(&str, &str)]) -> Config {
        Config::from_yaml(yaml, &with_env(env)).unwrap_or_else(|e| panic!("{yaml:?} {env:?}: {e}"))
    }

    fn fails(yaml: &str, env: &[(&str, &str)]) -> ConfigError {
        Config::from_yaml(yaml, &with_env(env)).expect_err("should fail")
    }

    #[test]
    fn a_file_setting_replaced_by_the_environment_is_said() {
        let yaml = "jwt_proxy:\n  jwt_kid: from-file\n  http_port: 9090\n";
        let warned = |env: &[(&str, &str)]| -> Vec<String> {
            ok(yaml, env)
                .warnings()
                .into_iter()
                .filter(|w| w.contains("from the environment overrides"))
                .collect()
        };
        assert_eq!(
            warned(&[("JWT_KID", "from-env")]),
            ["JWT_KID from the environment overrides jwt_kid in the configuration file"]
        );
        // The same value, a setting the file does not set, or an empty variable: quiet.
        assert!(warned(&[("JWT_KID", "from-file")]).is_empty());
        assert!(warned(&[("JWT_ISSUER", "me")]).is_empty());
        assert!(warned(&[("JWT_KID", " ")]).is_empty());
        assert_eq!(warned(&[("HTTP_PORT", "9091"), ("JWT_KID", "x")]).len(), 2);
    }

    /// A scratch directory of this test process (mode 0700).
    fn scratch(name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("jwt-proxy-cfg-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    /// A 64-character text key (the HS512 minimum).
    const KEY64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn defaults() {
        let c = ok("", &[]);
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.status_listen, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(c.upstream.url(), "http://127.0.0.1:9000/protected");
        let q = ok(
            "",
            &[("UPSTREAM_URL", "http://127.0.0.1:9000/p?api_key=SECRETQ&x")],
        );
        assert_eq!(
            q.upstream.shown_url(),
            "http://127.0.0.1:9000/p?api_key=[redacted]&[redacted]"
        );
        assert!(c.keys.is_demo());
        assert_eq!(c.bearer_key.as_ref(), Some(c.hmac()));
        assert!(c.bearer_key_is_signing_key);
        assert_eq!(c.token.ttl_secs, Some(300));
        assert_eq!(c.user_source, UserSource::parse("header:x-user").unwrap());
        assert_eq!(c.user_default.as_deref(), Some("anonymous"));
        assert_eq!(c.max_body_bytes, 1_048_576);
        assert_eq!(c.connect_timeout, Duration::from_millis(2000));
        assert_eq!(c.upstream_timeout, Duration::from_millis(30_000));
        assert_eq!(c.max_upstream_header_bytes, 65_536);
        assert_eq!(c.status_token, None);
        assert_eq!(
            c.status_show_headers,
            [
                "content-type",
                "content-length",
                "content-encoding",
                "user-agent",
                "accept",
                "accept-encoding",
                "host",
                "transfer-encoding",
                "expect"
            ]
        );
        assert_eq!(c.status_recent_bytes, 1_048_576);
        assert_eq!(c.drain_idle, Duration::from_secs(5));
        assert_eq!(c.shutdown_delay, Duration::ZERO);
        assert_eq!(c.server.grace_period_seconds, Some(35));
        assert_eq!(c.server.graceful_shutdown_timeout_seconds, Some(5));
        assert_eq!(c.server.threads as u64, default_threads());
        assert_eq!(c.server.work_stealing, default_threads() > 1);
    }

    #[test]
    fn shutdown_delay_is_bounded() {
        let c = ok("", &[("SHUTDOWN_DELAY_SECS", "5")]);
        assert_eq!(c.shutdown_delay, Duration::from_secs(5));
        let e = fails("", &[("SHUTDOWN_DELAY_SECS", "301")]);
        assert_eq!(e.setting(), "SHUTDOWN_DELAY_SECS", "{e}");
        let e = fails("", &[("SHUTDOWN_DELAY_SECS", "-1")]);
        assert_eq!(e.setting(), "SHUTDOWN_DELAY_SECS", "{e}");
    }

    #[test]
    fn no_key_is_refused_unless_the_demo_key_is_asked_for() {
        for env in [
            &[][..],
            &[("JWT_DEMO_KEY", "false")][..],
            &[("JWT_DEMO_KEY", "")][..],
        ] {
            let e = Config::from_yaml("", &only_env(env)).unwrap_err();
            assert_eq!(e.about, About::Setting(Setting::JwtSecret), "{env:?}");
            assert!(
                e.problem.contains("JWT_SECRET_FILE") && e.problem.contains("JWT_DEMO_KEY=true"),
                "says how to fix it: {e}"
            );
        }
        let demo = Config::from_yaml("", &only_env(&[("JWT_DEMO_KEY", "true")])).unwrap();
        assert!(demo.keys.is_demo());
        assert!(demo
            .warnings()
            .iter()
            .any(|w| w.contains("PUBLIC DEMO KEY")));
        let demo = Config::from_yaml("jwt_proxy:\n  jwt_demo_key: true\n", &only_env(&[])).unwrap();
        assert!(demo.keys.is_demo());
        // A configured key wins; JWT_DEMO_KEY only allows the fallback.
        let own = Config::from_yaml(
            "",
            &only_env(&[("JWT_DEMO_KEY", "true"), ("JWT_SECRET", KEY64)]),
        )
        .unwrap();
        assert_eq!(own.hmac().bytes(), KEY64.as_bytes());
        assert!(own.warnings().is_empty(), "{:?}", own.warnings());
        let e = Config::from_yaml("", &only_env(&[("JWT_DEMO_KEY", "yes")])).unwrap_err();
        assert_eq!(e.about, About::Setting(Setting::JwtDemoKey));
    }

    #[test]
    fn keys_shorter_than_the_algorithm_needs_are_refused() {
        let dir = scratch("short");
        let file = dir.join("key");
        let short = &KEY64[..63];
        let e = fails("", &[("JWT_SECRET", short)]);
        assert_eq!(e.setting(), "JWT_SECRET", "{e}");
        assert!(
            e.problem.contains("63 bytes") && e.problem.contains("at least 64"),
            "{e}"
        );
        assert!(!e.to_string().contains(short), "never the key: {e}");
        assert_eq!(
            ok("", &[("JWT_SECRET", KEY64)]).hmac().bytes(),
            KEY64.as_bytes()
        );
        // 63 bytes as hex (126 digits) and as base64.
        let e = fails(
            "",
            &[
                ("JWT_SECRET", &"ab".repeat(63)),
                ("JWT_SECRET_ENCODING", "hex"),
            ],
        );
        assert_eq!(e.setting(), "JWT_SECRET", "{e}");
        ok(
            "",
            &[
                ("JWT_SECRET", &"ab".repeat(64)),
                ("JWT_SECRET_ENCODING", "hex"),
            ],
        );
        let e = fails(
            "",
            &[("JWT_SECRET", "AP8Q"), ("JWT_SECRET_ENCODING", "base64")],
        );
        assert!(e.problem.contains("3 bytes"), "{e}");
        std::fs::write(&file, format!("{short}\n")).unwrap();
        let e = fails("", &[("JWT_SECRET_FILE", file.to_str().unwrap())]);
        assert_eq!(e.setting(), "JWT_SECRET_FILE", "{e}");
        // Bearer keys: HS256's 32 bytes.
        let e = fails("", &[("BEARER_SECRET", &KEY64[..31])]);
        assert_eq!(e.setting(), "BEARER_SECRET", "{e}");
        assert!(e.problem.contains("at least 32"), "{e}");
        std::fs::write(&file, &KEY64[..31]).unwrap();
        let e = fails("", &[("BEARER_SECRET_FILE", file.to_str().unwrap())]);
        assert_eq!(e.setting(), "BEARER_SECRET_FILE", "{e}");
        let c = ok("", &[("BEARER_SECRET", &KEY64[..32])]);
        assert_eq!(
            c.bearer_key.as_ref().unwrap().bytes(),
            &KEY64.as_bytes()[..32]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn key_files_use_the_one_loader_and_blank_files_are_errors() {
        let dir = scratch("keyfile");
        let file = dir.join("key");
        let path = file.to_str().unwrap();
        std::fs::write(&file, format!("{KEY64}\r\n")).unwrap();
        assert_eq!(
            ok("", &[("JWT_SECRET_FILE", path)]).hmac().bytes(),
            KEY64.as_bytes()
        );
        std::fs::write(&file, format!("  {}\n\n", "0a".repeat(64))).unwrap();
        let c = ok(
            "",
            &[("JWT_SECRET_FILE", path), ("JWT_SECRET_ENCODING", "hex")],
        );
        assert_eq!(c.hmac().bytes(), [10u8; 64]);
        // Blank files are errors, never a fallback to the demo key (allowed here) or to
        // JWT_SECRET.
        for blank in ["", "\n", "\r\n", "  \n", "\t"] {
            std::fs::write(&file, blank).unwrap();
            for encoding in ["text", "hex", "base64"] {
                let e = fails(
                    "",
                    &[
                        ("JWT_SECRET_FILE", path),
                        ("JWT_SECRET_ENCODING", encoding),
                        ("JWT_SECRET", KEY64),
                    ],
                );
                assert_eq!(e.setting(), "JWT_SECRET_FILE", "{blank:?} {encoding}: {e}");
                assert!(
                    e.problem.contains("empty") || e.problem.contains("blank"),
                    "{e}"
                );
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bearer_key_settings() {
        let c = ok("", &[("USER_SOURCE", "bearer")]);
        assert!(c.bearer_key_is_signing_key);
        assert!(
            c.warnings().iter().any(|w| w.contains("BEARER_SECRET")),
            "{:?}",
            c.warnings()
        );
        let c = ok(
            "",
            &[
                ("USER_SOURCE", "bearer"),
                ("JWT_SECRET", KEY64),
                ("BEARER_SECRET", &"cd".repeat(32)),
                ("BEARER_SECRET_ENCODING", "hex"),
            ],
        );
        assert!(!c.bearer_key_is_signing_key);
        assert_eq!(c.bearer_key.as_ref().unwrap().bytes(), [0xcd; 32]);
        assert_eq!(c.hmac().bytes(), KEY64.as_bytes());
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        // Only the bearer source uses the bearer key: no warning for the others.
        let c = ok("", &[("JWT_SECRET", KEY64)]);
        assert!(c.bearer_key_is_signing_key && c.warnings().is_empty());
    }

    #[test]
    fn empty_environment_values_do_not_override_the_file() {
        let yaml =
            "threads: 3\njwt_proxy:\n  http_port: 9090\n  jwt_ttl_secs: 60\n  user_default: bob\n  jwt_kid: k1\n";
        let c = ok(
            yaml,
            &[("HTTP_PORT", ""), ("USER_DEFAULT", ""), ("JWT_KID", " ")],
        );
        assert_eq!(c.listen.port(), 9090);
        assert_eq!(c.user_default.as_deref(), Some("bob"));
        assert_eq!(Some(c.keys.set.signing.as_str()), Some("k1"));
        // Values override the file; `none` makes identity required.
        let c = ok(yaml, &[("HTTP_PORT", "7070"), ("USER_DEFAULT", "none")]);
        assert_eq!(c.listen.port(), 7070);
        assert_eq!(c.token.ttl_secs, Some(60));
        assert_eq!(
            c.user_default, None,
            "USER_DEFAULT=none makes identity required"
        );
        assert_eq!(c.server.threads, 3);
        for required in ["user_default: \"\"", "user_default: none", "user_default:"] {
            let c = ok(&format!("jwt_proxy:\n  {required}\n"), &[]);
            assert_eq!(c.user_default, None, "{required}");
        }
        let c = ok("", &[("JWT_TTL_SECS", "0"), ("JWT_KID", "k2")]);
        assert_eq!(c.token.ttl_secs, None);
        assert_eq!(Some(c.keys.set.signing.as_str()), Some("k2"));
    }

    #[test]
    fn ttl_is_at_most_a_year() {
        assert_eq!(
            ok("", &[("JWT_TTL_SECS", "31536000")]).token.ttl_secs,
            Some(31_536_000)
        );
        let e = fails("", &[("JWT_TTL_SECS", "31536001")]);
        assert_eq!(e.setting(), "JWT_TTL_SECS", "{e}");
    }

    #[test]
    fn unknown_top_level_keys_are_refused() {
        let e = fails("grace_period_second: 30\n", &[]);
        assert_eq!(e.about, About::Key("grace_period_second".into()), "{e}");
        assert!(
            e.problem.contains("did you mean grace_period_seconds?"),
            "{e}"
        );
        let e = fails("jwt_prxy:\n  http_port: 1\n", &[]);
        assert_eq!(e.setting(), "jwt_prxy", "{e}");
        let e = fails("jwt_proxy:\n  http_prot: 1\n", &[]);
        assert_eq!(e.setting(), "jwt_proxy.http_prot", "{e}");
        assert!(e.problem.contains("did you mean http_port?"), "{e}");
        // Every key of Pingora 0.9.1's ServerConf is accepted.
        let keys = server_keys();
        for k in [
            "version",
            "daemon",
            "error_log",
            "pid_file",
            "upgrade_sock",
            "user",
            "group",
            "threads",
            "work_stealing",
            "grace_period_seconds",
            "graceful_shutdown_timeout_seconds",
            "upstream_keepalive_pool_size",
            "max_retries",
            "daemon_wait_for_ready",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} in {keys:?}");
        }
        ok(
            "version: 1\nwork_stealing: false\nupstream_keepalive_pool_size: 8\nmax_retries: 2\n",
            &[],
        );
    }

    #[test]
    fn work_stealing_is_on_only_with_several_workers_unless_set() {
        assert!(!ok("threads: 1\n", &[]).server.work_stealing);
        assert!(ok("threads: 3\n", &[]).server.work_stealing);
        assert!(
            !ok("threads: 3\nwork_stealing: false\n", &[])
                .server
                .work_stealing
        );
        assert!(
            ok("threads: 1\nwork_stealing: true\n", &[])
                .server
                .work_stealing
        );
    }

    #[test]
    fn grace_period_must_cover_the_upstream_timeout_and_the_idle_drain() {
        ok("", &[]); // 35 s against 30 s + 1
        let e = fails("", &[("UPSTREAM_TIMEOUT_MS", "35000")]);
        assert_eq!(e.setting(), "grace_period_seconds", "{e}");
        assert!(
            e.problem.contains("at least 36") && e.problem.contains("in flight"),
            "{e}"
        );
        ok(
            "grace_period_seconds: 3\n",
            &[("UPSTREAM_TIMEOUT_MS", "2000"), ("DRAIN_IDLE_SECS", "1")],
        );
        let e = fails(
            "grace_period_seconds: 3\n",
            &[("UPSTREAM_TIMEOUT_MS", "2001"), ("DRAIN_IDLE_SECS", "1")],
        );
        assert!(e.problem.contains("at least 4"), "{e}");
        ok(
            "grace_period_seconds: 5\n",
            &[("UPSTREAM_TIMEOUT_MS", "1000")],
        );
        let e = fails(
            "grace_period_seconds: 5\n",
            &[("UPSTREAM_TIMEOUT_MS", "1000"), ("DRAIN_IDLE_SECS", "6")],
        );
        assert!(e.problem.contains("DRAIN_IDLE_SECS"), "{e}");
        // `null` is Pingora's own 300 s.
        ok(
            "grace_period_seconds: null\n",
            &[("UPSTREAM_TIMEOUT_MS", "299000")],
        );
    }

    #[test]
    fn status_token_is_required_beyond_loopback() {
        let e = fails("", &[("STATUS_ADDR", "0.0.0.0")]);
        assert_eq!(e.setting(), "STATUS_TOKEN", "{e}");
        assert!(e.problem.contains("STATUS_TOKEN_FILE"), "{e}");
        ok("", &[("STATUS_ADDR", "::1")]);
        let token = "0123456789abcdef";
        let c = ok("", &[("STATUS_ADDR", "0.0.0.0"), ("STATUS_TOKEN", token)]);
        assert_eq!(c.status_token.as_deref(), Some(token));
        let e = fails("", &[("STATUS_TOKEN", &token[..15])]);
        assert_eq!(e.setting(), "STATUS_TOKEN", "{e}");
        let e = fails("", &[("STATUS_TOKEN", "0123456789 abcdef")]);
        assert_eq!(e.setting(), "STATUS_TOKEN", "{e}");
        let dir = scratch("token");
        let file = dir.join("token");
        let path = file.to_str().unwrap();
        std::fs::write(&file, format!("  {token}\n")).unwrap();
        let c = ok(
            "",
            &[("STATUS_ADDR", "0.0.0.0"), ("STATUS_TOKEN_FILE", path)],
        );
        assert_eq!(
            c.status_token.as_deref(),
            Some(token),
            "the file is trimmed"
        );
        for blank in ["", "\n  \n"] {
            std::fs::write(&file, blank).unwrap();
            let e = fails("", &[("STATUS_TOKEN_FILE", path), ("STATUS_TOKEN", token)]);
            assert_eq!(e.setting(), "STATUS_TOKEN_FILE", "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn status_show_headers_is_a_validated_list() {
        let c = ok("", &[("STATUS_SHOW_HEADERS", " X-Trace , accept,,x-trace")]);
        assert_eq!(c.status_show_headers, ["x-trace", "accept"]);
        let c = ok("jwt_proxy:\n  status_show_headers: \"\"\n", &[]);
        assert!(c.status_show_headers.is_empty(), "shows none");
        for bad in ["a b", "x(y)", "Authorization", "accept,cookie", "x-my-jwt"] {
            let e = fails("", &[("STATUS_SHOW_HEADERS", bad)]);
            assert_eq!(e.setting(), "STATUS_SHOW_HEADERS", "{bad}: {e}");
        }
    }

    #[test]
    fn status_and_drain_sizes() {
        let c = ok(
            "",
            &[
                ("STATUS_RECENT_BYTES", "65536"),
                ("MAX_UPSTREAM_HEADER_BYTES", "1048575"),
                ("DRAIN_IDLE_SECS", "35"),
            ],
        );
        assert_eq!(c.status_recent_bytes, 65_536);
        assert_eq!(c.max_upstream_header_bytes, 1_048_575);
        assert_eq!(c.drain_idle, Duration::from_secs(35));
        ok(
            "",
            &[
                ("STATUS_RECENT_BYTES", "67108864"),
                ("MAX_UPSTREAM_HEADER_BYTES", "1024"),
            ],
        );
    }

    /// Found by an outside attack: `-c` naming a FIFO hung `jwt-proxy -t`, and a 50 MB file
    /// was read whole.
    #[test]
    fn the_configuration_file_is_a_bounded_regular_file() {
        let dir = scratch("conf-fifo");
        let fifo = dir.join("fifo.yaml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let env = with_env(&[]);
        // No writer ever opens it: a blocking open would hang here.
        let e = Config::load(Some(&fifo), &env).unwrap_err();
        assert_eq!(e.setting(), "-c");
        assert!(e.problem.contains("not a regular file"), "{e}");
        let big = dir.join("big.yaml");
        std::fs::write(&big, "#".repeat(MAX_CONFIG_FILE_BYTES as usize + 1)).unwrap();
        let e = Config::load(Some(&big), &env).unwrap_err();
        assert!(e.problem.contains("larger than"), "{e}");
        let e = Config::load(Some(&dir.join("missing.yaml")), &env).unwrap_err();
        assert!(e.problem.starts_with("cannot read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn runtime_paths_default_to_a_private_directory() {
        // The uid as the kernel stamps it on a file we create, independently of /proc.
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = scratch("uid");
        std::fs::write(dir.join("f"), "").unwrap();
        let uid = std::fs::metadata(dir.join("f")).unwrap().uid();
        let c = ok("", &[]);
        assert_eq!(
            c.server.pid_file,
            format!("/tmp/jwt-proxy-{uid}/jwt-proxy.pid")
        );
        assert_eq!(
            c.server.upgrade_sock,
            format!("/tmp/jwt-proxy-{uid}/upgrade.sock")
        );
        assert_eq!(
            crate::cli::paths_text(&c),
            format!("pid_file=/tmp/jwt-proxy-{uid}/jwt-proxy.pid\nupgrade_sock=/tmp/jwt-proxy-{uid}/upgrade.sock\n")
        );

        let with = |pid: &Path, sock: &Path| {
            ok(
                &format!(
                    "pid_file: {}\nupgrade_sock: {}\n",
                    pid.display(),
                    sock.display()
                ),
                &[],
            )
        };
        // Missing: created, 0700.
        let run = dir.join("run");
        with(&run.join("p.pid"), &run.join("u.sock"))
            .prepare_runtime_dirs()
            .unwrap();
        assert_eq!(std::fs::metadata(&run).unwrap().mode() & 0o777, 0o700);
        // Writable by others, or by the group: refused, naming the key.
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = with(&run.join("p.pid"), &dir.join("u.sock"))
            .prepare_runtime_dirs()
            .unwrap_err();
        assert_eq!(e.setting(), "pid_file", "{e}");
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o770)).unwrap();
        let e = with(&dir.join("p.pid"), &run.join("u.sock"))
            .prepare_runtime_dirs()
            .unwrap_err();
        assert_eq!(e.setting(), "upgrade_sock", "{e}");
        assert!(e.problem.contains("writable by group or others"), "{e}");
        // A symbolic link is not a private directory.
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(&run, dir.join("link")).unwrap();
        let e = with(&dir.join("link/p.pid"), &dir.join("u.sock"))
            .prepare_runtime_dirs()
            .unwrap_err();
        assert_eq!(e.setting(), "pid_file", "{e}");
        // World-writable /tmp itself is refused.
        let e = with(Path::new("/tmp/jwt-proxy.pid"), &dir.join("u.sock"))
            .prepare_runtime_dirs()
            .unwrap_err();
        assert_eq!(e.setting(), "pid_file", "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_setting_has_one_typed_name_that_the_file_and_environment_use() {
        assert_eq!(Setting::ALL.len(), SETTINGS.len());
        let mut names = std::collections::BTreeSet::new();
        for (s, (name, default)) in Setting::ALL.iter().zip(SETTINGS) {
            assert_eq!(s.name(), *name);
            assert_eq!(s.default_value(), *default);
            assert_eq!(name.to_ascii_uppercase(), *name);
            assert!(names.insert(*name), "{name} twice");
            // The YAML key of each is known (an unknown one would be refused).
            let yaml = format!("jwt_proxy:\n  {}: null\n", name.to_ascii_lowercase());
            if let Err(e) = Config::from_yaml(&yaml, &with_env(&[])) {
                assert_eq!(e.setting(), *name, "{e}");
            }
        }
    }

    #[test]
    fn file_level_errors_name_the_file() {
        let dir = scratch("load");
        let file = dir.join("bad.yaml");
        std::fs::write(&file, "- a\n").unwrap();
        let e = Config::load(Some(&file), &with_env(&[])).unwrap_err();
        assert_eq!(e.about, About::File(Some(file.display().to_string())));
        assert!(e
            .to_string()
            .starts_with(&format!("config error: {}: ", file.display())));
        let e = Config::load(Some(&dir.join("missing.yaml")), &with_env(&[])).unwrap_err();
        assert_eq!(e.setting(), "-c");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_error_names_its_setting() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let same_port = &[("HTTP_PORT", "8081")][..];
        let cases: &[Case] = &[
            (
                "",
                &[("JWT_SECRET_ENCODING", "rot13")],
                "JWT_SECRET_ENCODING",
            ),
            ("jwt_proxy:\n  jwt_secret: \"   \"\n", &[], "JWT_SECRET"),
            (
                "",
                &[("JWT_SECRET", "xyz"), ("JWT_SECRET_ENCODING", "hex")],
                "JWT_SECRET",
            ),
            (
                "",
                &[("JWT_SECRET", "@@@"), ("JWT_SECRET_ENCODING", "base64")],
                "JWT_SECRET",
            ),
            ("", &[("JWT_SECRET", "short")], "JWT_SECRET"),
            (
                "",
                &[("JWT_SECRET_FILE", "/nonexistent/key")],
                "JWT_SECRET_FILE",
            ),
            ("", &[("JWT_DEMO_KEY", "1")], "JWT_DEMO_KEY"),
            ("", &[("BEARER_SECRET", "short")], "BEARER_SECRET"),
            (
                "",
                &[("BEARER_SECRET_ENCODING", "rot13")],
                "BEARER_SECRET_ENCODING",
            ),
            (
                "",
                &[("BEARER_SECRET_FILE", "/nonexistent/key")],
                "BEARER_SECRET_FILE",
            ),
            ("", &[("UPSTREAM_URL", "not a url")], "UPSTREAM_URL"),
            ("", &[("UPSTREAM_URL", "ftp://h/x")], "UPSTREAM_URL"),
            ("", &[("UPSTREAM_URL", "https://h/x")], "UPSTREAM_URL"),
            ("", &[("UPSTREAM_URL", "/protected")], "UPSTREAM_URL"),
            ("", &[("HTTP_PORT", "70000")], "HTTP_PORT"),
            ("", &[("HTTP_PORT", "0")], "HTTP_PORT"),
            ("", &[("HTTP_PORT", "eighty")], "HTTP_PORT"),
            ("", &[("STATUS_PORT", "-1")], "STATUS_PORT"),
            ("", same_port, "STATUS_PORT"),
            ("", &[("LISTEN_ADDR", "localhost")], "LISTEN_ADDR"),
            ("", &[("STATUS_ADDR", "1.2.3")], "STATUS_ADDR"),
            ("", &[("STATUS_ADDR", "0.0.0.0")], "STATUS_TOKEN"),
            ("", &[("STATUS_TOKEN", "short")], "STATUS_TOKEN"),
            (
                "",
                &[("STATUS_TOKEN_FILE", "/nonexistent/token")],
                "STATUS_TOKEN_FILE",
            ),
            ("", &[("STATUS_SHOW_HEADERS", "a b")], "STATUS_SHOW_HEADERS"),
            ("", &[("USER_SOURCE", "cookie:x")], "USER_SOURCE"),
            ("", &[("USER_SOURCE", "header:")], "USER_SOURCE"),
            ("", &[("USER_DEFAULT", "a\u{1}")], "USER_DEFAULT"),
            ("", &[("JWT_TTL_SECS", "5m")], "JWT_TTL_SECS"),
            ("", &[("JWT_TTL_SECS", "99999999")], "JWT_TTL_SECS"),
            ("", &[("MAX_BODY_BYTES", "1MB")], "MAX_BODY_BYTES"),
            ("", &[("MAX_BODY_BYTES", "0")], "MAX_BODY_BYTES"),
            (
                "",
                &[("UPSTREAM_CONNECT_TIMEOUT_MS", "0")],
                "UPSTREAM_CONNECT_TIMEOUT_MS",
            ),
            (
                "",
                &[("UPSTREAM_TIMEOUT_MS", "soon")],
                "UPSTREAM_TIMEOUT_MS",
            ),
            ("", &[("UPSTREAM_TIMEOUT_MS", "0")], "UPSTREAM_TIMEOUT_MS"),
            (
                "",
                &[("MAX_UPSTREAM_HEADER_BYTES", "1023")],
                "MAX_UPSTREAM_HEADER_BYTES",
            ),
            (
                "",
                &[("MAX_UPSTREAM_HEADER_BYTES", "1048576")],
                "MAX_UPSTREAM_HEADER_BYTES",
            ),
            ("", &[("ACCESS_LOG", "file")], "ACCESS_LOG"),
            ("", &[("STATUS_RECENT", "0")], "STATUS_RECENT"),
            ("", &[("STATUS_RECENT", "10001")], "STATUS_RECENT"),
            (
                "",
                &[("STATUS_RECENT_BYTES", "65535")],
                "STATUS_RECENT_BYTES",
            ),
            (
                "",
                &[("STATUS_RECENT_BYTES", "67108865")],
                "STATUS_RECENT_BYTES",
            ),
            (
                "",
                &[("CLIENT_KEEPALIVE_SECS", "0")],
                "CLIENT_KEEPALIVE_SECS",
            ),
            (
                "",
                &[("CLIENT_KEEPALIVE_SECS", "1m")],
                "CLIENT_KEEPALIVE_SECS",
            ),
            (
                "",
                &[("CLIENT_HEADER_TIMEOUT_MS", "0")],
                "CLIENT_HEADER_TIMEOUT_MS",
            ),
            (
                "",
                &[("CLIENT_BODY_TIMEOUT_MS", "0")],
                "CLIENT_BODY_TIMEOUT_MS",
            ),
            ("", &[("MAX_HEADER_BYTES", "1023")], "MAX_HEADER_BYTES"),
            ("", &[("DRAIN_IDLE_SECS", "0")], "DRAIN_IDLE_SECS"),
            ("", &[("DRAIN_IDLE_SECS", "36")], "grace_period_seconds"),
            ("", &[("JWT_KID", "a\nb")], "JWT_KID"),
            ("jwt_proxy:\n  http_prot: 1\n", &[], "jwt_proxy.http_prot"),
            ("jwt_proxy:\n  http_port: [1]\n", &[], "HTTP_PORT"),
            ("jwt_proxy: 3\n", &[], "jwt_proxy"),
            ("grace_period_second: 30\n", &[], "grace_period_second"),
            ("grace_period_seconds: 10\n", &[], "grace_period_seconds"),
            ("- a\n", &[], "config file"),
            ("a: [\n", &[], "config file"),
            ("threads: 0\n", &[], "threads"),
            ("threads: many\n", &[], "server settings"),
            ("pid_file: \"\"\n", &[], "pid_file"),
        ];
        for (yaml, env, setting) in cases {
            let e = fails(yaml, env);
            assert_eq!(e.setting(), *setting, "{yaml:?} {env:?} gave {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("config error: {setting}: ")),
                "{e}"
            );
            assert!(
                !e.to_string().contains(DEMO_SECRET),
                "errors never show the key: {e}"
            );
            for (k, v) in env.iter() {
                if ["JWT_SECRET", "BEARER_SECRET", "STATUS_TOKEN"].contains(k) {
                    assert!(
                        v.len() < 6 || !e.problem.contains(v),
                        "never the secret: {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn upstream_target_keeps_queries() {
        let u = UpstreamUrl::parse("http://up.example:8000/protected?a=1").unwrap();
        assert_eq!(u.authority, "up.example:8000");
        assert_eq!(u.target(None), "/protected?a=1");
        assert_eq!(u.target(Some("b=2")), "/protected?a=1&b=2");
        let u = UpstreamUrl::parse("http://[::1]").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target(Some("x"))),
            ("::1", 80, "/?x".to_string())
        );
    }
}
