//! The settings table: each setting's typed name, its environment name (the YAML key is the same
//! in lower case) and its default, declared once; and the limits the build step enforces.

/// Used when no `-c` is given and this file exists.
pub(crate) const DEFAULT_CONF_PATH: &str = "conf/jwt-proxy.yaml";

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
const DEFAULT_STATUS_SHOW_HEADERS: &str = "content-type,content-length,content-encoding,\
user-agent,accept,accept-encoding,host,transfer-encoding,expect";

/// Headers that carry secrets: `STATUS_SHOW_HEADERS` cannot list them.
/// `USER_DEFAULT` value (besides the empty YAML string) that makes identity required.
pub(crate) const USER_DEFAULT_NONE: &str = "none";

/// Largest configuration file read (the stock one is a few KiB).
pub const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

/// Longest `SHUTDOWN_DELAY_SECS` (a balancer needs a few probe intervals, not minutes).
pub(crate) const MAX_SHUTDOWN_DELAY_SECS: u64 = 300;

/// Longest `JWT_TTL_SECS`: one year.
pub(crate) const MAX_TTL_SECS: u64 = 31_536_000;

/// Shortest `STATUS_TOKEN`.
pub(crate) const MIN_STATUS_TOKEN_CHARS: usize = 16;
