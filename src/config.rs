//! Every setting, read once at start: the YAML file (Pingora's server keys at the top level, ours
//! under `jwt_proxy:`), then environment variables over it, into one typed, validated `Config`.
//! Errors name the setting (by its environment variable name) and the problem.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use pingora::server::configuration::ServerConf;

use crate::identity::{check_user, UserSource};
use crate::token::{Key, KeyEncoding, TokenSettings, DEMO_SECRET};

/// Used when no `-c` is given and this file exists.
pub const DEFAULT_CONF_PATH: &str = "conf/jwt-proxy.yaml";

/// Our settings: environment variable name and default. In the YAML file each is the same name in
/// lower case under `jwt_proxy:`.
pub const SETTINGS: &[(&str, &str)] = &[
    ("LISTEN_ADDR", "0.0.0.0"),
    ("HTTP_PORT", "8080"),
    ("STATUS_ADDR", "127.0.0.1"),
    ("STATUS_PORT", "8081"),
    ("UPSTREAM_URL", "http://127.0.0.1:9000/protected"),
    ("JWT_SECRET", DEMO_SECRET),
    ("JWT_SECRET_FILE", ""),
    ("JWT_SECRET_ENCODING", "text"),
    ("JWT_TTL_SECS", "300"),
    ("JWT_ISSUER", ""),
    ("JWT_AUDIENCE", ""),
    ("JWT_KID", ""),
    ("USER_SOURCE", "header:x-user"),
    ("USER_DEFAULT", "anonymous"),
    ("MAX_BODY_BYTES", "1048576"),
    ("UPSTREAM_CONNECT_TIMEOUT_MS", "2000"),
    ("UPSTREAM_TIMEOUT_MS", "30000"),
    ("ACCESS_LOG", "stdout"),
    ("STATUS_RECENT", "100"),
    ("CLIENT_KEEPALIVE_SECS", "60"),
    ("CLIENT_HEADER_TIMEOUT_MS", "10000"),
    ("CLIENT_BODY_TIMEOUT_MS", "30000"),
    ("MAX_HEADER_BYTES", "65536"),
];

/// Pingora server settings we default differently from Pingora (its grace period is 300 s and
/// it runs one thread per service). The YAML file's top-level keys override these.
const SERVER_DEFAULTS: &str = "
version: 1
threads: 2
grace_period_seconds: 5
graceful_shutdown_timeout_seconds: 5
pid_file: /tmp/jwt-proxy.pid
upgrade_sock: /tmp/jwt-proxy-upgrade.sock
";

/// Pingora refuses request heads larger than this before our code sees them.
pub const PINGORA_MAX_HEADER_BYTES: usize = 1_048_575;

/// A configuration error: which setting, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config error: {}: {}", self.setting, self.problem)
    }
}

impl std::error::Error for ConfigError {}

fn err(setting: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.to_string(),
        problem: problem.into(),
    }
}

/// Where requests go, parsed from `UPSTREAM_URL` (plain HTTP only: this build has no TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub host: String,
    pub port: u16,
    /// `host[:port]` as the `Host` header should carry it.
    pub authority: String,
    pub path: String,
    /// A query of the URL itself, kept before the client's own.
    pub query: Option<String>,
}

impl UpstreamUrl {
    pub fn parse(s: &str) -> Result<UpstreamUrl, String> {
        let uri: http::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL ({e})"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err("https upstreams are not supported by this build".into()),
            _ => return Err(format!("{s:?} must start with http://")),
        }
        let auth = uri
            .authority()
            .ok_or_else(|| format!("{s:?} has no host"))?;
        if auth.as_str().contains('@') {
            return Err("user:password@ in the URL is not supported".into());
        }
        let host = auth.host().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{s:?} has no host"));
        }
        let port = auth.port_u16().unwrap_or(80);
        if port == 0 {
            return Err("port 0 is not a valid upstream port".into());
        }
        Ok(UpstreamUrl {
            host: host.to_string(),
            port,
            authority: auth.as_str().to_string(),
            path: match uri.path() {
                "" => "/".to_string(),
                p => p.to_string(),
            },
            query: uri.query().filter(|q| !q.is_empty()).map(str::to_string),
        })
    }

    /// The request target sent upstream: our path, then our query and the client's.
    pub fn target(&self, client_query: Option<&str>) -> String {
        let client_query = client_query.filter(|q| !q.is_empty());
        let mut t = String::with_capacity(self.path.len() + 2 + client_query.map_or(0, str::len));
        t.push_str(&self.path);
        for (i, q) in self
            .query
            .as_deref()
            .into_iter()
            .chain(client_query)
            .enumerate()
        {
            t.push(if i == 0 { '?' } else { '&' });
            t.push_str(q);
        }
        t
    }

    /// Resolve the host once, at start-up (Pingora's peer would otherwise resolve, and panic on
    /// failure, per request).
    pub fn resolve(&self) -> Result<SocketAddr, ConfigError> {
        use std::net::ToSocketAddrs;
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| err("UPSTREAM_URL", format!("cannot resolve {}: {e}", self.host)))?
            .next()
            .ok_or_else(|| {
                err(
                    "UPSTREAM_URL",
                    format!("{} resolves to no address", self.host),
                )
            })
    }

    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.target(None))
    }
}

/// The whole validated configuration.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub status_listen: SocketAddr,
    pub upstream: UpstreamUrl,
    pub key: Key,
    pub key_encoding: KeyEncoding,
    pub token: TokenSettings,
    pub user_source: UserSource,
    /// `None`: identity is required (401 without one).
    pub user_default: Option<String>,
    pub max_body_bytes: u64,
    pub connect_timeout: Duration,
    pub upstream_timeout: Duration,
    pub access_log: bool,
    pub status_recent: usize,
    /// How long an idle client keep-alive connection is kept (Pingora's default: forever).
    pub client_keepalive_secs: u64,
    /// A request head (request line and headers) must arrive whole within this long of its
    /// first byte (of the connection, for the first request): slowloris protection.
    pub client_header_timeout: Duration,
    /// Longest wait for each read of a request body (Pingora's default: 60 s).
    pub client_body_timeout: Duration,
    /// Largest request head, request line and headers together (Pingora's own cap: 1 MiB).
    pub max_header_bytes: usize,
    /// Pingora's own settings (threads, grace period, pid file, upgrade socket...).
    pub server: ServerConf,
}

impl Config {
    /// Read `path` (or `conf/jwt-proxy.yaml` when it exists, or nothing), then the environment.
    pub fn load(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let default = Path::new(DEFAULT_CONF_PATH);
        let path = path.or_else(|| default.exists().then_some(default));
        let yaml = match path {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| err("-c", format!("cannot read {}: {e}", p.display())))?,
            None => String::new(),
        };
        let path_shown = path.map(|p| p.display().to_string()).unwrap_or_default();
        Config::from_yaml(&yaml, env).map_err(|mut e| {
            if e.setting == "yaml" {
                e.setting = path_shown;
            }
            e
        })
    }

    /// Build from YAML text and an environment lookup (a closure, so tests need no real env).
    pub fn from_yaml(
        yaml: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let doc: serde_yaml::Value = if yaml.trim().is_empty() {
            serde_yaml::Value::Mapping(Default::default())
        } else {
            serde_yaml::from_str(yaml).map_err(|e| err("yaml", format!("not valid YAML: {e}")))?
        };
        let serde_yaml::Value::Mapping(mut top) = doc else {
            return Err(err("yaml", "the file must be a mapping of settings"));
        };
        let ours = top.remove("jwt_proxy");
        let raw = Raw::new(ours, env)?;
        let server = server_conf(top)?;
        raw.into_config(server)
    }
}

fn server_conf(top: serde_yaml::Mapping) -> Result<ServerConf, ConfigError> {
    let serde_yaml::Value::Mapping(mut merged) =
        serde_yaml::from_str(SERVER_DEFAULTS).map_err(|e| err("server defaults", e.to_string()))?
    else {
        return Err(err("server defaults", "not a mapping"));
    };
    for (k, v) in top {
        merged.insert(k, v);
    }
    let conf: ServerConf = serde_yaml::from_value(serde_yaml::Value::Mapping(merged))
        .map_err(|e| err("server settings", e.to_string()))?;
    let conf = conf
        .validate()
        .map_err(|e| err("server settings", e.to_string()))?;
    if conf.threads == 0 {
        return Err(err("threads", "must be at least 1"));
    }
    Ok(conf)
}

/// Setting name → raw text, file first, environment over it.
struct Raw(BTreeMap<&'static str, String>);

impl Raw {
    fn new(
        file: Option<serde_yaml::Value>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Raw, ConfigError> {
        let mut values: BTreeMap<&'static str, String> =
            SETTINGS.iter().map(|(k, d)| (*k, d.to_string())).collect();
        match file {
            None | Some(serde_yaml::Value::Null) => {}
            Some(serde_yaml::Value::Mapping(m)) => {
                for (k, v) in m {
                    let key = k.as_str().unwrap_or_default().to_ascii_uppercase();
                    let Some((name, _)) = SETTINGS.iter().find(|(n, _)| *n == key) else {
                        return Err(err(
                            &format!("jwt_proxy.{}", k.as_str().unwrap_or("?")),
                            "unknown setting",
                        ));
                    };
                    let text = match v {
                        serde_yaml::Value::Null => String::new(),
                        serde_yaml::Value::String(s) => s,
                        serde_yaml::Value::Number(n) => n.to_string(),
                        serde_yaml::Value::Bool(b) => b.to_string(),
                        _ => return Err(err(name, "must be a single value")),
                    };
                    values.insert(name, text);
                }
            }
            Some(_) => return Err(err("jwt_proxy", "must be a mapping of settings")),
        }
        for (name, _) in SETTINGS {
            if let Some(v) = env(name) {
                values.insert(name, v);
            }
        }
        Ok(Raw(values))
    }

    fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or_default()
    }

    fn opt(&self, name: &str) -> Option<String> {
        Some(self.get(name).trim())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    fn num<T: std::str::FromStr>(&self, name: &str, what: &str) -> Result<T, ConfigError> {
        let v = self.get(name).trim();
        v.parse()
            .map_err(|_| err(name, format!("{v:?} is not {what}")))
    }

    fn port(&self, name: &str) -> Result<u16, ConfigError> {
        match self.num::<u32>(name, "a port number (1-65535)")? {
            p @ 1..=65535 => Ok(p as u16),
            p => Err(err(name, format!("{p} is out of range (1-65535)"))),
        }
    }

    fn addr(&self, name: &str) -> Result<IpAddr, ConfigError> {
        let v = self.get(name).trim();
        v.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| err(name, format!("{v:?} is not an IP address")))
    }

    fn millis(&self, name: &str) -> Result<Duration, ConfigError> {
        match self.num::<u64>(name, "a whole number of milliseconds")? {
            0 => Err(err(name, "must be greater than 0")),
            ms => Ok(Duration::from_millis(ms)),
        }
    }

    fn into_config(self, server: ServerConf) -> Result<Config, ConfigError> {
        let key_encoding =
            KeyEncoding::parse(self.get("JWT_SECRET_ENCODING")).ok_or_else(|| {
                err(
                    "JWT_SECRET_ENCODING",
                    format!(
                        "{:?} is not one of text, hex, base64",
                        self.get("JWT_SECRET_ENCODING")
                    ),
                )
            })?;
        let key = match self.opt("JWT_SECRET_FILE") {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| err("JWT_SECRET_FILE", format!("cannot read {path}: {e}")))?;
                let text = text.strip_suffix('\n').unwrap_or(&text);
                let text = text.strip_suffix('\r').unwrap_or(text);
                Key::decode(text, key_encoding)
                    .map_err(|p| err("JWT_SECRET_FILE", format!("the key in {path} {p}")))?
            }
            None => Key::decode(self.get("JWT_SECRET"), key_encoding).map_err(|p| {
                err(
                    "JWT_SECRET",
                    format!("the key {p} (encoding {})", key_encoding.as_str()),
                )
            })?,
        };
        let ttl = self.num::<u64>("JWT_TTL_SECS", "a whole number of seconds")?;
        let user_source =
            UserSource::parse(self.get("USER_SOURCE")).map_err(|p| err("USER_SOURCE", p))?;
        let user_default = self.opt("USER_DEFAULT");
        if let Some(d) = &user_default {
            check_user(d).map_err(|r| err("USER_DEFAULT", r.message()))?;
        }
        let upstream = UpstreamUrl::parse(self.get("UPSTREAM_URL").trim())
            .map_err(|p| err("UPSTREAM_URL", p))?;
        let access_log = match self.get("ACCESS_LOG").trim() {
            "stdout" => true,
            "off" => false,
            v => {
                return Err(err(
                    "ACCESS_LOG",
                    format!("{v:?} is not one of stdout, off"),
                ))
            }
        };
        let status_recent = match self.num::<usize>("STATUS_RECENT", "a whole number")? {
            n @ 1..=10_000 => n,
            n => {
                return Err(err(
                    "STATUS_RECENT",
                    format!("{n} is out of range (1-10000)"),
                ))
            }
        };
        let kid = self.opt("JWT_KID");
        if kid
            .as_deref()
            .is_some_and(|k| k.chars().any(char::is_control))
        {
            return Err(err("JWT_KID", "contains control characters"));
        }
        Ok(Config {
            listen: SocketAddr::new(self.addr("LISTEN_ADDR")?, self.port("HTTP_PORT")?),
            status_listen: SocketAddr::new(self.addr("STATUS_ADDR")?, self.port("STATUS_PORT")?),
            upstream,
            key,
            key_encoding,
            token: TokenSettings {
                ttl_secs: (ttl > 0).then_some(ttl),
                issuer: self.opt("JWT_ISSUER"),
                audience: self.opt("JWT_AUDIENCE"),
                kid,
            },
            user_source,
            user_default,
            max_body_bytes: self.num("MAX_BODY_BYTES", "a whole number of bytes")?,
            connect_timeout: self.millis("UPSTREAM_CONNECT_TIMEOUT_MS")?,
            upstream_timeout: self.millis("UPSTREAM_TIMEOUT_MS")?,
            access_log,
            status_recent,
            client_keepalive_secs: match self
                .num::<u64>("CLIENT_KEEPALIVE_SECS", "a whole number of seconds")?
            {
                0 => return Err(err("CLIENT_KEEPALIVE_SECS", "must be at least 1")),
                n => n,
            },
            client_header_timeout: self.millis("CLIENT_HEADER_TIMEOUT_MS")?,
            client_body_timeout: self.millis("CLIENT_BODY_TIMEOUT_MS")?,
            max_header_bytes: match self
                .num::<usize>("MAX_HEADER_BYTES", "a whole number of bytes")?
            {
                n if n < 1024 => return Err(err("MAX_HEADER_BYTES", "must be at least 1024")),
                n if n > PINGORA_MAX_HEADER_BYTES => {
                    return Err(err(
                        "MAX_HEADER_BYTES",
                        format!("must be at most {PINGORA_MAX_HEADER_BYTES} (Pingora's own limit)"),
                    ))
                }
                n => n,
            },
            server,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn fails(yaml: &str, env: &[(&str, &str)]) -> ConfigError {
        Config::from_yaml(yaml, &with_env(env)).expect_err("should fail")
    }

    #[test]
    fn defaults() {
        let c = Config::from_yaml("", &with_env(&[])).unwrap();
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.status_listen, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(c.upstream.url(), "http://127.0.0.1:9000/protected");
        assert!(c.key.is_demo());
        assert_eq!(c.token.ttl_secs, Some(300));
        assert_eq!(c.user_source, UserSource::parse("header:x-user").unwrap());
        assert_eq!(c.user_default.as_deref(), Some("anonymous"));
        assert_eq!(c.max_body_bytes, 1_048_576);
        assert_eq!(c.connect_timeout, Duration::from_millis(2000));
        assert_eq!(c.upstream_timeout, Duration::from_millis(30_000));
        assert_eq!(c.server.grace_period_seconds, Some(5));
        assert_eq!(c.server.threads, 2);
    }

    #[test]
    fn env_overrides_file() {
        let yaml =
            "threads: 3\njwt_proxy:\n  http_port: 9090\n  jwt_ttl_secs: 60\n  user_default: bob\n";
        let c = Config::from_yaml(
            yaml,
            &with_env(&[("HTTP_PORT", "7070"), ("USER_DEFAULT", "")]),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 7070);
        assert_eq!(c.token.ttl_secs, Some(60));
        assert_eq!(
            c.user_default, None,
            "empty USER_DEFAULT makes identity required"
        );
        assert_eq!(c.server.threads, 3);
        let c =
            Config::from_yaml("", &with_env(&[("JWT_TTL_SECS", "0"), ("JWT_KID", "k2")])).unwrap();
        assert_eq!(c.token.ttl_secs, None);
        assert_eq!(c.token.kid.as_deref(), Some("k2"));
    }

    #[test]
    fn key_encodings_and_file() {
        let c = Config::from_yaml(
            "",
            &with_env(&[("JWT_SECRET", "AP8Q"), ("JWT_SECRET_ENCODING", "base64")]),
        )
        .unwrap();
        assert_eq!(c.key.bytes(), &[0, 255, 16]);
        let dir = std::env::temp_dir().join(format!("jwt-proxy-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key");
        std::fs::write(&file, "00ff10\n").unwrap();
        let c = Config::from_yaml(
            "",
            &with_env(&[
                ("JWT_SECRET_FILE", file.to_str().unwrap()),
                ("JWT_SECRET_ENCODING", "hex"),
            ]),
        )
        .unwrap();
        assert_eq!(c.key.bytes(), &[0, 255, 16]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_error_names_its_setting() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                "",
                &[("JWT_SECRET_ENCODING", "rot13")],
                "JWT_SECRET_ENCODING",
            ),
            ("", &[("JWT_SECRET", "")], "JWT_SECRET"),
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
            (
                "",
                &[("JWT_SECRET_FILE", "/nonexistent/key")],
                "JWT_SECRET_FILE",
            ),
            ("", &[("UPSTREAM_URL", "not a url")], "UPSTREAM_URL"),
            ("", &[("UPSTREAM_URL", "ftp://h/x")], "UPSTREAM_URL"),
            ("", &[("UPSTREAM_URL", "https://h/x")], "UPSTREAM_URL"),
            ("", &[("UPSTREAM_URL", "/protected")], "UPSTREAM_URL"),
            ("", &[("HTTP_PORT", "70000")], "HTTP_PORT"),
            ("", &[("HTTP_PORT", "0")], "HTTP_PORT"),
            ("", &[("HTTP_PORT", "eighty")], "HTTP_PORT"),
            ("", &[("STATUS_PORT", "-1")], "STATUS_PORT"),
            ("", &[("LISTEN_ADDR", "localhost")], "LISTEN_ADDR"),
            ("", &[("STATUS_ADDR", "1.2.3")], "STATUS_ADDR"),
            ("", &[("USER_SOURCE", "cookie:x")], "USER_SOURCE"),
            ("", &[("USER_SOURCE", "header:")], "USER_SOURCE"),
            ("", &[("USER_DEFAULT", "a\u{1}")], "USER_DEFAULT"),
            ("", &[("JWT_TTL_SECS", "5m")], "JWT_TTL_SECS"),
            ("", &[("MAX_BODY_BYTES", "1MB")], "MAX_BODY_BYTES"),
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
            ("", &[("ACCESS_LOG", "file")], "ACCESS_LOG"),
            ("", &[("STATUS_RECENT", "0")], "STATUS_RECENT"),
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
            ("", &[("JWT_KID", "a\nb")], "JWT_KID"),
            ("jwt_proxy:\n  http_prot: 1\n", &[], "jwt_proxy.http_prot"),
            ("jwt_proxy:\n  http_port: [1]\n", &[], "HTTP_PORT"),
            ("jwt_proxy: 3\n", &[], "jwt_proxy"),
            ("- a\n", &[], "yaml"),
            ("a: [\n", &[], "yaml"),
            ("threads: 0\n", &[], "threads"),
            ("threads: many\n", &[], "server settings"),
        ];
        for (yaml, env, setting) in cases {
            let e = fails(yaml, env);
            assert_eq!(&e.setting, setting, "{yaml:?} {env:?} gave {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("config error: {setting}: ")),
                "{e}"
            );
            assert!(
                !e.to_string().contains(DEMO_SECRET),
                "errors never show the key: {e}"
            );
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
