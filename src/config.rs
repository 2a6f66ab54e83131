//! Every setting, read once at start: the YAML file (Pingora's server keys at the top level, ours
//! under `jwt_proxy:`), then environment variables over it, into one typed, validated `Config`.
//! Errors name the setting (by its environment variable name) and the problem.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pingora::server::configuration::ServerConf;

use crate::http::identity::{check_user, UserSource};
use crate::signing::key::{Key, KeyEncoding, PrivateKey, MIN_BEARER_KEY_BYTES, MIN_SIGNING_KEY_BYTES};
use crate::signing::keyset::{self, Keyset};
use crate::signing::minting::TokenSettings;
use crate::signing::ring::{RotationSettings, RETIRE_LEEWAY_SECS};

/// Used when no `-c` is given and this file exists.
pub const DEFAULT_CONF_PATH: &str = "conf/jwt-proxy.yaml";

/// Declares our settings once: the typed names the code asks for (a misspelt name does not
/// compile) and the public `(environment name, default)` table.
macro_rules! settings {
    ($($variant:ident = $name:literal, $default:expr;)*) => {
        /// One of our settings. In the YAML file each is its environment name in lower case under
        /// `jwt_proxy:`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub enum Setting { $($variant),* }

        impl Setting {
            pub const ALL: &'static [Setting] = &[$(Setting::$variant),*];

            /// The environment variable name (the YAML key is the same in lower case).
            pub fn name(self) -> &'static str {
                match self { $(Setting::$variant => $name),* }
            }

            pub fn default_value(self) -> &'static str {
                match self { $(Setting::$variant => $default),* }
            }
        }

        /// Our settings: environment variable name and default.
        pub const SETTINGS: &[(&str, &str)] = &[$(($name, $default)),*];
    };
}

settings! {
    ListenAddr = "LISTEN_ADDR", "0.0.0.0";
    HttpPort = "HTTP_PORT", "8080";
    StatusAddr = "STATUS_ADDR", "127.0.0.1";
    StatusPort = "STATUS_PORT", "8081";
    StatusToken = "STATUS_TOKEN", "";
    StatusTokenFile = "STATUS_TOKEN_FILE", "";
    StatusShowHeaders = "STATUS_SHOW_HEADERS", DEFAULT_STATUS_SHOW_HEADERS;
    UpstreamUrl = "UPSTREAM_URL", "http://127.0.0.1:9000/protected";
    JwtSecret = "JWT_SECRET", "";
    JwtSecretFile = "JWT_SECRET_FILE", "";
    JwtSecretEncoding = "JWT_SECRET_ENCODING", "text";
    JwtDemoKey = "JWT_DEMO_KEY", "false";
    JwtTtlSecs = "JWT_TTL_SECS", "300";
    JwtIssuer = "JWT_ISSUER", "";
    JwtAudience = "JWT_AUDIENCE", "";
    JwtKid = "JWT_KID", "";
    JwtKeys = "JWT_KEYS", "";
    JwtJwksMaxAgeSecs = "JWT_JWKS_MAX_AGE_SECS", "300";
    JwtKeyPublishLeadSecs = "JWT_KEY_PUBLISH_LEAD_SECS", "";
    JwtNbfSkewSecs = "JWT_NBF_SKEW_SECS", "";
    BearerSecret = "BEARER_SECRET", "";
    BearerSecretFile = "BEARER_SECRET_FILE", "";
    BearerSecretEncoding = "BEARER_SECRET_ENCODING", "text";
    UserSource = "USER_SOURCE", "header:x-user";
    UserDefault = "USER_DEFAULT", "anonymous";
    MaxBodyBytes = "MAX_BODY_BYTES", "1048576";
    UpstreamConnectTimeoutMs = "UPSTREAM_CONNECT_TIMEOUT_MS", "2000";
    UpstreamTimeoutMs = "UPSTREAM_TIMEOUT_MS", "30000";
    MaxUpstreamHeaderBytes = "MAX_UPSTREAM_HEADER_BYTES", "65536";
    AccessLog = "ACCESS_LOG", "stdout";
    StatusRecent = "STATUS_RECENT", "100";
    StatusRecentBytes = "STATUS_RECENT_BYTES", "1048576";
    ClientKeepaliveSecs = "CLIENT_KEEPALIVE_SECS", "60";
    ClientHeaderTimeoutMs = "CLIENT_HEADER_TIMEOUT_MS", "10000";
    ClientBodyTimeoutMs = "CLIENT_BODY_TIMEOUT_MS", "30000";
    MaxHeaderBytes = "MAX_HEADER_BYTES", "65536";
    DrainIdleSecs = "DRAIN_IDLE_SECS", "5";
    ShutdownDelaySecs = "SHUTDOWN_DELAY_SECS", "0";
}

/// Request headers whose values the status service shows by default; all others are redacted.
pub const DEFAULT_STATUS_SHOW_HEADERS: &str = "content-type,content-length,content-encoding,\
user-agent,accept,accept-encoding,host,transfer-encoding,expect";

/// Headers that carry secrets: `STATUS_SHOW_HEADERS` cannot list them.
pub use crate::observe::record::NEVER_SHOWN as ALWAYS_REDACTED;

/// `USER_DEFAULT` value (besides the empty YAML string) that makes identity required.
pub const USER_DEFAULT_NONE: &str = "none";

/// Longest `SHUTDOWN_DELAY_SECS` (a balancer needs a few probe intervals, not minutes).
pub const MAX_SHUTDOWN_DELAY_SECS: u64 = 300;

/// Longest `JWT_TTL_SECS`: one year.
pub const MAX_TTL_SECS: u64 = 31_536_000;

/// Shortest `STATUS_TOKEN`.
pub const MIN_STATUS_TOKEN_CHARS: usize = 16;

/// Pingora server settings we default differently from Pingora (its grace period is 300 s and
/// it runs one thread per service). The YAML file's top-level keys override these. `pid_file`
/// and `upgrade_sock` default to a private per-user directory (`default_runtime_dir`);
/// `threads` to the CPUs the process may use (`default_threads`), and `work_stealing` to on only
/// when there are several: one worker runs tokio's single-threaded scheduler, which costs 10-15%
/// less CPU per request in `make compare` than the stealing one with one worker. Several workers
/// keep stealing: without it, a worker taking a pooled upstream connection released by another
/// races that worker's idle watch (Pingora logs "failed to acquire reusable stream" and opens a
/// new connection, for about 0.1% of requests in a 2-thread wrk run).
const SERVER_DEFAULTS: &str = "
version: 1
grace_period_seconds: 35
graceful_shutdown_timeout_seconds: 5
";

/// Pingora's own grace period when the file sets `grace_period_seconds: null`.
const PINGORA_DEFAULT_GRACE_SECS: u64 = 300;

/// Pingora refuses request heads larger than this before our code sees them.
pub const PINGORA_MAX_HEADER_BYTES: usize = 1_048_575;

/// What a configuration error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum About {
    /// One of our settings.
    Setting(Setting),
    /// Anything else the file or command line names: a Pingora key (`threads`), an unknown key
    /// (`jwt_proxy.http_prot`), `-c`.
    Key(String),
    /// The configuration file as a whole (not YAML, not a mapping); its path once known.
    File(Option<String>),
}

/// A configuration error: what it is about, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub about: About,
    pub problem: String,
}

impl ConfigError {
    /// The name the error shows: a setting's environment name, a key, or the file's path.
    pub fn setting(&self) -> &str {
        match &self.about {
            About::Setting(s) => s.name(),
            About::Key(k) => k,
            About::File(Some(path)) => path,
            About::File(None) => "config file",
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config error: {}: {}", self.setting(), self.problem)
    }
}

impl std::error::Error for ConfigError {}

fn err(setting: Setting, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        about: About::Setting(setting),
        problem: problem.into(),
    }
}

fn key_err(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        about: About::Key(key.into()),
        problem: problem.into(),
    }
}

fn file_err(problem: impl Into<String>) -> ConfigError {
    ConfigError {
        about: About::File(None),
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
            .map_err(|e| {
                err(
                    Setting::UpstreamUrl,
                    format!("cannot resolve {}: {e}", self.host),
                )
            })?
            .next()
            .ok_or_else(|| {
                err(
                    Setting::UpstreamUrl,
                    format!("{} resolves to no address", self.host),
                )
            })
    }

    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.target(None))
    }

    /// The URL as logged and shown (`/readyz` needs no token): query values redacted like a
    /// request's, since an upstream's query may carry a key.
    pub fn shown_url(&self) -> String {
        crate::observe::record::shown_path(self.url().as_bytes())
    }
}

/// Where the signing keys come from and the rules of their rotation.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// The keys at start-up: the `JWT_KEYS` file's set, or a one-key set (`JWT_SECRET*`, with
    /// `JWT_KID`).
    pub set: Keyset,
    /// `JWT_KEYS`: the keyset file, watched and reloaded. `None`: `JWT_SECRET*`, fixed.
    pub path: Option<PathBuf>,
    /// How `JWT_SECRET*` is encoded (for the start-up log line).
    pub encoding: KeyEncoding,
    pub rotation: RotationSettings,
    /// `Cache-Control: max-age` of the JWKS.
    pub jwks_max_age_secs: u64,
}

impl KeyConfig {
    /// The key that signs at start-up.
    pub fn signing_key(&self) -> &PrivateKey {
        let entry = self.set.get(&self.set.signing);
        &entry.unwrap_or(&self.set.keys[0]).key
    }

    pub fn is_demo(&self) -> bool {
        matches!(self.signing_key(), PrivateKey::Hs512(k) if k.is_demo())
    }
}

/// The whole validated configuration.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub status_listen: SocketAddr,
    /// `STATUS_TOKEN`/`STATUS_TOKEN_FILE`: when set, `/status` and `/status.json` want
    /// `Authorization: Bearer <token>`. Required when `STATUS_ADDR` is not a loopback address.
    pub status_token: Option<String>,
    /// Request headers (lower case) whose values the status service shows; others are redacted.
    pub status_show_headers: Vec<String>,
    pub upstream: UpstreamUrl,
    /// The signing keys.
    pub keys: KeyConfig,
    /// Verifies inbound bearer tokens (`USER_SOURCE=bearer`): `BEARER_SECRET*`, else (with
    /// `JWT_SECRET*`) the signing key; `None` with `JWT_KEYS` and no `BEARER_SECRET*`.
    pub bearer_key: Option<Key>,
    /// No `BEARER_SECRET*` was given: `bearer_key` is the signing key.
    pub bearer_key_is_signing_key: bool,
    pub token: TokenSettings,
    pub user_source: UserSource,
    /// `None`: identity is required (401 without one).
    pub user_default: Option<String>,
    pub max_body_bytes: u64,
    pub connect_timeout: Duration,
    pub upstream_timeout: Duration,
    /// Largest upstream response head we accept.
    pub max_upstream_header_bytes: usize,
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
    pub client_body_timeout: Duration,
    /// Largest request head, request line and headers together (Pingora's own cap: 1 MiB).
    pub max_header_bytes: usize,
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
    pub shadowed_by_env: Vec<&'static str>,
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
                .map_err(|e| key_err("-c", format!("cannot read {}: {e}", p.display())))?,
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

    /// `signing_key=KID FINGERPRINT` for a fixed key (`JWT_SECRET*`; nothing for a `JWT_KEYS`
    /// keyset, whose keys change while it runs), for `--print-paths`: the supervisor refuses an
    /// upgrade whose kid changes while its key does not (the new key was never read: a
    /// container's bind mount still showing the old file, say).
    pub fn signing_text(&self) -> String {
        if self.keys.path.is_some() {
            return String::new();
        }
        let kid = Some(self.keys.set.signing.as_str()).filter(|k| !k.is_empty());
        format!(
            "signing_key={} {}\n",
            kid.unwrap_or("-"),
            self.keys.signing_key().fingerprint()
        )
    }

    /// `pid_file=…` and `upgrade_sock=…` lines (`jwt-proxy --print-paths`), for the supervisor
    /// and reload scripts.
    pub fn paths_text(&self) -> String {
        format!(
            "pid_file={}\nupgrade_sock={}\n",
            self.server.pid_file, self.server.upgrade_sock
        )
    }

    /// Make sure the directories of `pid_file` and `upgrade_sock` are ours alone: create a
    /// missing one with mode 0700; refuse one owned by another user, group- or world-writable,
    /// or a symbolic link (anyone who can write there can replace the upgrade socket and take
    /// over the listening sockets at the next upgrade).
    /// At a fresh start (not an upgrade, whose listeners are handed over): both addresses can
    /// be listened on. Pingora would otherwise retry, then panic in the status service and run
    /// on without it.
    pub fn check_listen_addresses(&self) -> Result<(), ConfigError> {
        for (setting, addr) in [
            (Setting::HttpPort, self.listen),
            (Setting::StatusPort, self.status_listen),
        ] {
            // Like Pingora's own bind, wait a while for a port still held (by a process that is
            // stopping, when the supervisor restarts a crashed one).
            let until = std::time::Instant::now() + Duration::from_secs(15);
            loop {
                match std::net::TcpListener::bind(addr) {
                    Ok(_) => break,
                    Err(e)
                        if e.kind() == std::io::ErrorKind::AddrInUse
                            && std::time::Instant::now() < until =>
                    {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Err(e) => return Err(err(setting, format!("cannot listen on {addr}: {e}"))),
                }
            }
        }
        Ok(())
    }

    pub fn prepare_runtime_dirs(&self) -> Result<(), ConfigError> {
        let uid = effective_uid().map_err(|p| key_err("pid_file", p))?;
        for (key, path) in [
            ("pid_file", &self.server.pid_file),
            ("upgrade_sock", &self.server.upgrade_sock),
        ] {
            let dir = match Path::new(path).parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            private_dir(dir, uid).map_err(|p| key_err(key, p))?;
        }
        Ok(())
    }
}

/// `/tmp/jwt-proxy-<uid>`: where `pid_file` and `upgrade_sock` go unless the file says otherwise.
pub fn default_runtime_dir() -> Result<PathBuf, String> {
    Ok(PathBuf::from(format!(
        "/tmp/jwt-proxy-{}",
        effective_uid()?
    )))
}

/// This process's effective user id (Linux: from `/proc/self/status`, no unsafe code needed).
pub fn effective_uid() -> Result<u32, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot tell this process's user id (/proc/self/status: {e})"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .ok_or_else(|| "cannot tell this process's user id (/proc/self/status)".to_string())
}

fn private_dir(dir: &Path, uid: u32) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let shown = dir.display();
    let meta = match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create the directory {shown}: {e}"))?;
            std::fs::symlink_metadata(dir).map_err(|e| format!("cannot inspect {shown}: {e}"))?
        }
        Err(e) => return Err(format!("cannot inspect {shown}: {e}")),
        Ok(m) => m,
    };
    if !meta.is_dir() {
        return Err(format!(
            "{shown} is not a directory (a symbolic link is not accepted)"
        ));
    }
    if meta.uid() != uid {
        return Err(format!(
            "the directory {shown} belongs to uid {}, not to this user (uid {uid}); another user \
             could replace the pid file or the upgrade socket: use a directory of your own",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "the directory {shown} is writable by group or others (mode {:o}); they could \
             replace the pid file or the upgrade socket: use a directory only this user can \
             write (chmod 700)",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// What the command line asks for before Pingora parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Early {
    /// `--version` / `-V`: print `jwt-proxy <version>` and exit 0.
    Version,
    /// `jwt-proxy keys …`: the key tool (its arguments, `keys` first).
    Keys(Vec<OsString>),
    /// Run (or `-t`), with Pingora's options; `print_paths`: `--print-paths` was given.
    Run {
        args: Vec<OsString>,
        print_paths: bool,
    },
}

/// Our own flags, which Pingora's `Opt` does not know: `--version`/`-V`, and `--print-paths`
/// (print `pid_file=`/`upgrade_sock=` once the configuration is loaded, then exit 0).
pub fn early_args(args: impl IntoIterator<Item = OsString>) -> Early {
    let args: Vec<OsString> = args.into_iter().collect();
    if args.get(1).is_some_and(|a| a == "keys") {
        return Early::Keys(args[1..].to_vec());
    }
    let mut rest = Vec::new();
    let mut print_paths = false;
    for (i, a) in args.into_iter().enumerate() {
        match a.to_str() {
            Some("--version" | "-V") if i > 0 => return Early::Version,
            Some("--print-paths") if i > 0 => print_paths = true,
            _ => rest.push(a),
        }
    }
    Early::Run {
        args: rest,
        print_paths,
    }
}

/// `jwt-proxy <version>`.
pub fn version_line() -> String {
    format!("jwt-proxy {}", env!("CARGO_PKG_VERSION"))
}

/// Pingora's server settings, as its `ServerConf` reads them: every other top-level key (but
/// `jwt_proxy`) is a typo, which Pingora itself would ignore.
fn server_keys() -> Vec<String> {
    match serde_yaml::to_value(ServerConf::default()) {
        Ok(serde_yaml::Value::Mapping(m)) => m
            .keys()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The closest of `known` to `word`, if it is close (an edit distance of at most 2).
fn did_you_mean<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    known
        .into_iter()
        .map(|k| (distance(word, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!(" (did you mean {k}?)"))
        .unwrap_or_default()
}

fn yaml_key_text(k: &serde_yaml::Value) -> String {
    match k {
        serde_yaml::Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into()),
    }
}

fn server_conf(top: serde_yaml::Mapping) -> Result<ServerConf, ConfigError> {
    let known = server_keys();
    for k in top.keys() {
        let name = yaml_key_text(k);
        if !known.contains(&name) {
            return Err(key_err(
                name.clone(),
                format!(
                    "unknown setting{}; the top level holds Pingora's server settings, ours go \
                     under jwt_proxy:",
                    did_you_mean(&name, known.iter().map(String::as_str))
                ),
            ));
        }
    }
    let serde_yaml::Value::Mapping(mut merged) = serde_yaml::from_str(SERVER_DEFAULTS)
        .map_err(|e| key_err("server defaults", e.to_string()))?
    else {
        return Err(key_err("server defaults", "not a mapping"));
    };
    let top_has_work_stealing = top.contains_key("work_stealing");
    if !top.contains_key("threads") {
        merged.insert("threads".into(), default_threads().into());
    }
    for (key, file) in [
        ("pid_file", "jwt-proxy.pid"),
        ("upgrade_sock", "upgrade.sock"),
    ] {
        if !top.contains_key(key) {
            let dir = default_runtime_dir().map_err(|p| key_err(key, p))?;
            merged.insert(key.into(), dir.join(file).display().to_string().into());
        }
    }
    for (k, v) in top {
        merged.insert(k, v);
    }
    let conf: ServerConf = serde_yaml::from_value(serde_yaml::Value::Mapping(merged))
        .map_err(|e| key_err("server settings", e.to_string()))?;
    let mut conf = conf
        .validate()
        .map_err(|e| key_err("server settings", e.to_string()))?;
    if !top_has_work_stealing {
        conf.work_stealing = conf.threads > 1;
    }
    if conf.threads == 0 {
        return Err(key_err("threads", "must be at least 1"));
    }
    for (key, path) in [
        ("pid_file", &conf.pid_file),
        ("upgrade_sock", &conf.upgrade_sock),
    ] {
        if path.trim().is_empty() {
            return Err(key_err(key, "must be a path"));
        }
    }
    Ok(conf)
}

/// Worker threads when `threads` is not set: the CPUs this process may run on (its affinity
/// mask and cgroup CPU quota, as `std::thread::available_parallelism` reads them), so a
/// container limited to one CPU does not run two threads that take turns on it.
pub fn default_threads() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// Setting → raw text: the default, then the file, then the environment over it; and the
/// settings the file gave a value that the environment replaced with another.
struct Raw(BTreeMap<Setting, String>, Vec<Setting>);

impl Raw {
    fn new(
        file: Option<serde_yaml::Value>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Raw, ConfigError> {
        let mut values: BTreeMap<Setting, String> = Setting::ALL
            .iter()
            .map(|s| (*s, s.default_value().to_string()))
            .collect();
        let mut in_file = Vec::new();
        match file {
            None | Some(serde_yaml::Value::Null) => {}
            Some(serde_yaml::Value::Mapping(m)) => {
                for (k, v) in m {
                    let key = yaml_key_text(&k);
                    let upper = key.to_ascii_uppercase();
                    let Some(setting) = Setting::ALL.iter().find(|s| s.name() == upper) else {
                        let names: Vec<String> = SETTINGS
                            .iter()
                            .map(|(n, _)| n.to_ascii_lowercase())
                            .collect();
                        let hint = did_you_mean(&key, names.iter().map(String::as_str));
                        return Err(key_err(
                            format!("jwt_proxy.{key}"),
                            format!("unknown setting{hint}"),
                        ));
                    };
                    let text = match v {
                        serde_yaml::Value::Null => String::new(),
                        serde_yaml::Value::String(s) => s,
                        serde_yaml::Value::Number(n) => n.to_string(),
                        serde_yaml::Value::Bool(b) => b.to_string(),
                        _ => return Err(err(*setting, "must be a single value")),
                    };
                    values.insert(*setting, text);
                    in_file.push(*setting);
                }
            }
            Some(_) => return Err(key_err("jwt_proxy", "must be a mapping of settings")),
        }
        let mut shadowed = Vec::new();
        for s in Setting::ALL {
            // Set to nothing (`FOO=` or `FOO=${FOO:-}` in compose) is the same as unset.
            if let Some(v) = env(s.name()).filter(|v| !v.trim().is_empty()) {
                // Not when the file holds the default: the stock file spells out every default,
                // and `HTTP_PORT=9090 make run` is no surprise to warn about.
                let file_value = values.get(s).map(String::as_str);
                if in_file.contains(s)
                    && file_value != Some(v.as_str())
                    && file_value != Some(s.default_value())
                {
                    shadowed.push(*s);
                }
                values.insert(*s, v);
            }
        }
        Ok(Raw(values, shadowed))
    }

    /// The raw text (every setting has one: its default at least).
    fn get(&self, s: Setting) -> &str {
        self.0
            .get(&s)
            .map(String::as_str)
            .unwrap_or(s.default_value())
    }

    /// The trimmed text, `None` when empty.
    fn opt(&self, s: Setting) -> Option<String> {
        Some(self.get(s).trim())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    fn num<T: std::str::FromStr>(&self, s: Setting, what: &str) -> Result<T, ConfigError> {
        let v = self.get(s).trim();
        v.parse()
            .map_err(|_| err(s, format!("{v:?} is not {what}")))
    }

    /// A whole number within `lo..=hi`.
    fn within<T>(&self, s: Setting, what: &str, lo: T, hi: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let n: T = self.num(s, what)?;
        if n < lo || n > hi {
            return Err(err(s, format!("{n} is out of range ({lo}-{hi})")));
        }
        Ok(n)
    }

    fn port(&self, s: Setting) -> Result<u16, ConfigError> {
        match self.num::<u32>(s, "a port number (1-65535)")? {
            p @ 1..=65535 => Ok(p as u16),
            p => Err(err(s, format!("{p} is out of range (1-65535)"))),
        }
    }

    fn addr(&self, s: Setting) -> Result<IpAddr, ConfigError> {
        let v = self.get(s).trim();
        v.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| err(s, format!("{v:?} is not an IP address")))
    }

    fn millis(&self, s: Setting) -> Result<Duration, ConfigError> {
        match self.num::<u64>(s, "a whole number of milliseconds")? {
            0 => Err(err(s, "must be greater than 0")),
            ms => Ok(Duration::from_millis(ms)),
        }
    }

    fn secs(&self, s: Setting) -> Result<u64, ConfigError> {
        match self.num::<u64>(s, "a whole number of seconds")? {
            0 => Err(err(s, "must be at least 1")),
            n => Ok(n),
        }
    }

    fn flag(&self, s: Setting) -> Result<bool, ConfigError> {
        match self.get(s).trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            v => Err(err(s, format!("{v:?} is not true or false"))),
        }
    }

    fn encoding(&self, s: Setting) -> Result<KeyEncoding, ConfigError> {
        KeyEncoding::parse(self.get(s)).ok_or_else(|| {
            err(
                s,
                format!("{:?} is not one of text, hex, base64", self.get(s)),
            )
        })
    }

    /// A key from `file` (wins) or `text`, decoded under `encoding`, at least `min` bytes;
    /// `None` when neither is set.
    fn key(
        &self,
        text: Setting,
        file: Setting,
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
        let (token, from) = match self.opt(Setting::StatusTokenFile) {
            Some(path) => (
                crate::signing::key::read_secret_file(Path::new(&path))
                    .map_err(|p| err(Setting::StatusTokenFile, p))?
                    .trim()
                    .to_string(),
                Setting::StatusTokenFile,
            ),
            None => match self.opt(Setting::StatusToken) {
                Some(t) => (t, Setting::StatusToken),
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

    fn header_list(&self, s: Setting) -> Result<Vec<String>, ConfigError> {
        let mut out: Vec<String> = Vec::new();
        for item in self.get(s).split(',') {
            let name = item.trim().to_ascii_lowercase();
            if name.is_empty() {
                continue;
            }
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(err(s, format!("{:?} is not a header name", item.trim())));
            }
            if ALWAYS_REDACTED.contains(&name.as_str()) {
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

    fn into_config(self, server: ServerConf) -> Result<Config, ConfigError> {
        use Setting as S;
        let key_encoding = self.encoding(S::JwtSecretEncoding)?;
        let secret = self.key(
            S::JwtSecret,
            S::JwtSecretFile,
            key_encoding,
            MIN_SIGNING_KEY_BYTES,
            "HS512",
        )?;
        // Absolute (daemon mode changes directory to /), symbolic links kept: a reload must
        // follow a `..data` swap, not the target the link had at start.
        let keyset_path = match self.opt(S::JwtKeys) {
            Some(p) => Some(std::path::absolute(&p).map_err(|e| err(S::JwtKeys, e.to_string()))?),
            None => None,
        };
        let (set, signing_secret) = match (&keyset_path, secret) {
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
                            "no signing key is configured: set JWT_SECRET_FILE (or JWT_SECRET) to \
                         your key, JWT_KEYS to a keyset, or JWT_DEMO_KEY=true to run a demo with \
                         the public demo key",
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
        let bearer_encoding = self.encoding(S::BearerSecretEncoding)?;
        let bearer = self.key(
            S::BearerSecret,
            S::BearerSecretFile,
            bearer_encoding,
            MIN_BEARER_KEY_BYTES,
            "HS256",
        )?;
        let bearer_key_is_signing_key = bearer.is_none();
        let bearer_key = bearer.or(signing_secret);

        let ttl = self.num::<u64>(S::JwtTtlSecs, "a whole number of seconds")?;
        if ttl > MAX_TTL_SECS {
            return Err(err(
                S::JwtTtlSecs,
                format!("{ttl} is more than one year ({MAX_TTL_SECS})"),
            ));
        }
        let user_source =
            UserSource::parse(self.get(S::UserSource)).map_err(|p| err(S::UserSource, p))?;
        let user_default = self.opt(S::UserDefault).filter(|d| d != USER_DEFAULT_NONE);
        if let Some(d) = &user_default {
            check_user(d).map_err(|r| err(S::UserDefault, r.message()))?;
        }
        let upstream = UpstreamUrl::parse(self.get(S::UpstreamUrl).trim())
            .map_err(|p| err(S::UpstreamUrl, p))?;
        let access_log = match self.get(S::AccessLog).trim() {
            "stdout" => true,
            "off" => false,
            v => {
                return Err(err(
                    S::AccessLog,
                    format!("{v:?} is not one of stdout, off"),
                ))
            }
        };
        if user_source == UserSource::Bearer && bearer_key.is_none() {
            return Err(err(
                S::BearerSecret,
                "USER_SOURCE=bearer with JWT_KEYS needs BEARER_SECRET_FILE (or BEARER_SECRET): \
                 the key that verifies client tokens",
            ));
        }
        if keyset_path.is_some() && ttl == 0 {
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
        let nbf_skew_secs = match self.opt(S::JwtNbfSkewSecs) {
            None => None,
            Some(_) => {
                Some(self.within(S::JwtNbfSkewSecs, "a whole number of seconds", 0, 3_600)?)
            }
        };
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
        let max_body_bytes = match self.num::<u64>(S::MaxBodyBytes, "a whole number of bytes")? {
            0 => {
                return Err(err(
                    S::MaxBodyBytes,
                    "must be at least 1 (0 would refuse every body)",
                ))
            }
            n => n,
        };
        let upstream_timeout = self.millis(S::UpstreamTimeoutMs)?;
        let drain_idle = Duration::from_secs(self.secs(S::DrainIdleSecs)?);
        check_grace(&server, upstream_timeout, drain_idle)?;
        let shutdown_delay =
            match self.num::<u64>(S::ShutdownDelaySecs, "a whole number of seconds")? {
                n if n > MAX_SHUTDOWN_DELAY_SECS => {
                    return Err(err(
                        S::ShutdownDelaySecs,
                        format!("{n} s is more than {MAX_SHUTDOWN_DELAY_SECS} s"),
                    ))
                }
                n => Duration::from_secs(n),
            };
        Ok(Config {
            shadowed_by_env: self.1.iter().map(|s| s.name()).collect(),
            listen,
            status_listen,
            status_token,
            status_show_headers: self.header_list(S::StatusShowHeaders)?,
            upstream,
            keys: KeyConfig {
                set,
                path: keyset_path,
                encoding: key_encoding,
                rotation: RotationSettings {
                    publish_lead_secs,
                    retire_after_secs: ttl + RETIRE_LEEWAY_SECS,
                },
                jwks_max_age_secs,
            },
            bearer_key,
            bearer_key_is_signing_key,
            token: TokenSettings {
                ttl_secs: (ttl > 0).then_some(ttl),
                issuer: self.opt(S::JwtIssuer),
                audience: self.opt(S::JwtAudience),
                nbf_skew_secs,
            },
            user_source,
            user_default,
            max_body_bytes,
            connect_timeout: self.millis(S::UpstreamConnectTimeoutMs)?,
            upstream_timeout,
            max_upstream_header_bytes: self.within(
                S::MaxUpstreamHeaderBytes,
                "a whole number of bytes",
                1024,
                PINGORA_MAX_HEADER_BYTES,
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
            max_header_bytes: match self
                .num::<usize>(S::MaxHeaderBytes, "a whole number of bytes")?
            {
                n if n < 1024 => return Err(err(S::MaxHeaderBytes, "must be at least 1024")),
                n if n > PINGORA_MAX_HEADER_BYTES => {
                    return Err(err(
                        S::MaxHeaderBytes,
                        format!("must be at most {PINGORA_MAX_HEADER_BYTES} (Pingora's own limit)"),
                    ))
                }
                n => n,
            },
            drain_idle,
            shutdown_delay,
            server,
        })
    }
}

/// The grace period must let a request in flight at a stop or upgrade finish, and outlast the
/// time idle connections are kept open while draining.
fn check_grace(
    server: &ServerConf,
    upstream_timeout: Duration,
    drain_idle: Duration,
) -> Result<(), ConfigError> {
    let grace = server
        .grace_period_seconds
        .unwrap_or(PINGORA_DEFAULT_GRACE_SECS);
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

#[cfg(test)]
mod tests {
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
        // The same value, a setting the file does not set (or sets to its default), or an empty
        // variable: quiet.
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
            c.paths_text(),
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
    fn our_flags_are_taken_before_pingora_sees_the_command_line() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            early_args(args(&["jwt-proxy", "--version"])),
            Early::Version
        );
        assert_eq!(
            early_args(args(&["jwt-proxy", "-c", "x", "-V"])),
            Early::Version
        );
        assert_eq!(
            early_args(args(&["jwt-proxy", "--print-paths", "-c", "x.yaml"])),
            Early::Run {
                args: args(&["jwt-proxy", "-c", "x.yaml"]),
                print_paths: true
            }
        );
        assert_eq!(
            early_args(args(&["jwt-proxy", "-t"])),
            Early::Run {
                args: args(&["jwt-proxy", "-t"]),
                print_paths: false
            }
        );
        assert_eq!(
            version_line(),
            format!("jwt-proxy {}", env!("CARGO_PKG_VERSION"))
        );
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
