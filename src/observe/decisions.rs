//! Why each request ended as it did: one reason per request, from a closed, documented list
//! ([`REASONS`]). This table is the one home of each reason's code (the `error` of a refusal's
//! JSON body), its HTTP status, its outcome and its meaning: the replies, `/metrics`'
//! `jwt_proxy_decisions_total{outcome,reason}`, the JSON, the status page and the table in
//! docs/status.md (checked by a test) all read it.

/// How a request ended, for the outcome counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered (whatever its status).
    Proxied,
    /// Refused by the proxy before anything went upstream, or the client's own fault (4xx).
    Rejected,
    /// The upstream could not be reached or did not answer properly in time (502/504).
    UpstreamError,
    /// The client went away before an answer, the drain cut it, or another failure.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Proxied => "proxied",
            Outcome::Rejected => "rejected",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Failed => "failed",
        }
    }
}

pub const OUTCOMES: [Outcome; 4] = [
    Outcome::Proxied,
    Outcome::Rejected,
    Outcome::UpstreamError,
    Outcome::Failed,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Forwarded,
    MethodNotAllowed,
    BodyTooLarge,
    HeadersTooLarge,
    InvalidFraming,
    InvalidTarget,
    BadRequest,
    RequestTimeout,
    HttpError,
    InvalidUser,
    AmbiguousUser,
    InvalidJson,
    InvalidBearerToken,
    IdentityRequired,
    UpstreamUnavailable,
    UpstreamTimeout,
    InternalError,
    ClientGone,
    DrainCut,
}

/// A reason as shown: its name, the status the proxy answers it with (`None`: the upstream's,
/// Pingora's own, or no answer), the outcome it belongs to, and what it means.
#[derive(Debug)]
pub struct ReasonInfo {
    pub reason: Reason,
    pub name: &'static str,
    pub status: Option<u16>,
    pub outcome: Outcome,
    pub help: &'static str,
}

const fn r(
    reason: Reason,
    name: &'static str,
    status: Option<u16>,
    outcome: Outcome,
    help: &'static str,
) -> ReasonInfo {
    ReasonInfo {
        reason,
        name,
        status,
        outcome,
        help,
    }
}

use Outcome::{Failed, Proxied, Rejected, UpstreamError};

/// Every reason, in [`Reason`] order (a unit test keeps them aligned).
#[rustfmt::skip]
pub(crate) const REASONS: &[ReasonInfo] = &[
    r(Reason::Forwarded, "forwarded", None, Proxied, "the upstream answered, whatever its status"),
    r(Reason::MethodNotAllowed, "method_not_allowed", Some(405), Rejected, "not a POST"),
    r(Reason::BodyTooLarge, "body_too_large", Some(413), Rejected, "body over MAX_BODY_BYTES"),
    r(Reason::HeadersTooLarge, "headers_too_large", Some(431), Rejected, "request head over MAX_HEADER_BYTES"),
    r(Reason::InvalidFraming, "invalid_framing", Some(400), Rejected, "ambiguous body framing: Content-Length with Transfer-Encoding, repeated or bad lengths, HTTP/1.1 without Host"),
    r(Reason::InvalidTarget, "invalid_target", Some(400), Rejected, "the request target is not a path (absolute URL, *)"),
    r(Reason::BadRequest, "bad_request", Some(400), Rejected, "the request could not be read, e.g. a bad chunk or a protected hop-by-hop header"),
    r(Reason::RequestTimeout, "request_timeout", Some(408), Rejected, "the body did not arrive within CLIENT_BODY_TIMEOUT_MS"),
    r(Reason::HttpError, "error", None, Rejected, "Pingora refused the request with another status"),
    r(Reason::InvalidUser, "invalid_user", Some(400), Rejected, "the user value breaks the rules"),
    r(Reason::AmbiguousUser, "ambiguous_user", Some(400), Rejected, "more than one user value"),
    r(Reason::InvalidJson, "invalid_json", Some(400), Rejected, "the body is not a JSON object, with USER_SOURCE=json:..."),
    r(Reason::InvalidBearerToken, "invalid_bearer_token", Some(401), Rejected, "the bearer token was refused, with USER_SOURCE=bearer"),
    r(Reason::IdentityRequired, "identity_required", Some(401), Rejected, "no identity and USER_DEFAULT=none"),
    r(Reason::UpstreamUnavailable, "upstream_unavailable", Some(502), UpstreamError, "the upstream could not be reached or answered wrongly"),
    r(Reason::UpstreamTimeout, "upstream_timeout", Some(504), UpstreamError, "the upstream did not answer within UPSTREAM_TIMEOUT_MS"),
    r(Reason::InternalError, "internal_error", Some(500), Failed, "a failure inside the proxy"),
    r(Reason::ClientGone, "client_gone", None, Failed, "the client went away before its answer"),
    r(Reason::DrainCut, "drain_cut", None, Failed, "still in flight when a stop's grace period ended"),
];

impl Reason {
    pub const fn info(self) -> &'static ReasonInfo {
        &REASONS[self as usize]
    }

    pub const fn as_str(self) -> &'static str {
        self.info().name
    }

    pub const fn outcome(self) -> Outcome {
        self.info().outcome
    }

    /// The status the proxy answers with for this reason (500 for a reason that has none of
    /// its own: only `internal_error`'s replies are built without one).
    pub const fn status(self) -> u16 {
        match self.info().status {
            Some(s) => s,
            None => 500,
        }
    }
}

impl ReasonInfo {
    /// What it means, with the status the proxy answers it with: the status page's and the
    /// manual's wording.
    pub(crate) fn meaning(&self) -> String {
        match self.status {
            Some(s) => format!("{} ({s})", self.help),
            None => self.help.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_enum_order_with_unique_names() {
        for (i, row) in REASONS.iter().enumerate() {
            assert_eq!(row.reason as usize, i, "{} out of order", row.name);
            assert!(!row.name.is_empty() && !row.help.is_empty());
            assert_eq!(
                REASONS.iter().filter(|o| o.name == row.name).count(),
                1,
                "{}",
                row.name
            );
        }
    }

    #[test]
    fn every_status_matches_its_outcome() {
        for row in REASONS {
            match (row.status, row.outcome) {
                (Some(s), Outcome::Rejected) => assert!((400..500).contains(&s), "{}", row.name),
                (Some(s), Outcome::UpstreamError) => assert!(s == 502 || s == 504, "{}", row.name),
                (Some(s), Outcome::Failed) => assert_eq!(s, 500, "{}", row.name),
                (None, _) => {}
                (Some(_), Outcome::Proxied) => panic!("{}: the upstream's status", row.name),
            }
        }
    }

    /// docs/status.md's table of reasons is this table: the same rows, in the same order, with the
    /// same outcome and meaning (the manual sets setting names in backticks).
    #[test]
    fn the_readme_table_is_this_table() {
        let readme = include_str!("../../docs/status.md");
        let rows: Vec<Vec<String>> = readme
            .lines()
            .skip_while(|l| !l.starts_with("| outcome | reason | what it means |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| {
                l.trim_matches('|')
                    .split(" | ")
                    .map(|c| c.trim().replace('`', ""))
                    .collect()
            })
            .collect();
        let ours: Vec<Vec<String>> = REASONS
            .iter()
            .map(|r| {
                vec![
                    r.outcome.as_str().to_string(),
                    r.name.to_string(),
                    r.meaning(),
                ]
            })
            .collect();
        assert_eq!(rows, ours);
    }
}
