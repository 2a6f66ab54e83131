//! `UPSTREAM_URL`, parsed once into the parts a request needs (plain HTTP only: this build has
//! no TLS).

use std::net::SocketAddr;

use super::error::{err, ConfigError};
use super::settings::Setting;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub host: String,
    pub port: u16,
    /// `host[:port]` as the `Host` header should carry it.
    pub(crate) authority: String,
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
        crate::observe::redact::shown_path(self.url().as_bytes())
    }
}
