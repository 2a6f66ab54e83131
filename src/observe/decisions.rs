//! Why each request ended as it did: one reason per request, from a closed, documented list
//! ([`REASONS`], which also drives `/metrics`' `jwt_proxy_decisions_total{outcome,reason}`, the
//! JSON and the status page). A refusal's reason is the `error` code of its JSON body.

use crate::observe::record::Outcome;

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

/// A reason as shown: its name, the outcome it belongs to, and what it means.
#[derive(Debug)]
pub struct ReasonInfo {
    pub reason: Reason,
    pub name: &'static str,
    pub outcome: Outcome,
    pub help: &'static str,
}

const fn r(reason: Reason, name: &'static str, outcome: Outcome, help: &'static str) -> ReasonInfo {
    ReasonInfo {
        reason,
        name,
        outcome,
        help,
    }
}

use Outcome::{Failed, Proxied, Rejected, UpstreamError};

/// Every reason, in [`Reason`] order (a unit test keeps them aligned).
pub const REASONS: &[ReasonInfo] = &[
    r(Reason::Forwarded, "forwarded", Proxied, "the upstream answered, whatever its status"),
    r(Reason::MethodNotAllowed, "method_not_allowed", Rejected, "not a POST (405)"),
    r(Reason::BodyTooLarge, "body_too_large", Rejected, "body over MAX_BODY_BYTES (413)"),
    r(Reason::HeadersTooLarge, "headers_too_large", Rejected, "request head over MAX_HEADER_BYTES (431)"),
    r(Reason::InvalidFraming, "invalid_framing", Rejected, "ambiguous body framing: Content-Length with Transfer-Encoding, repeated or bad lengths, an upgrade (400)"),
    r(Reason::InvalidTarget, "invalid_target", Rejected, "request target not a path (absolute URL, *) (400)"),
    r(Reason::BadRequest, "bad_request", Rejected, "the request could not be read, e.g. a bad chunk or a protected hop-by-hop header (400)"),
    r(Reason::RequestTimeout, "request_timeout", Rejected, "the body did not arrive within CLIENT_BODY_TIMEOUT_MS (408)"),
    r(Reason::HttpError, "error", Rejected, "Pingora refused the request with another status"),
    r(Reason::InvalidUser, "invalid_user", Rejected, "the user value breaks the rules (400)"),
    r(Reason::AmbiguousUser, "ambiguous_user", Rejected, "more than one user value (400)"),
    r(Reason::InvalidJson, "invalid_json", Rejected, "the body is not a JSON object, with USER_SOURCE=json:... (400)"),
    r(Reason::InvalidBearerToken, "invalid_bearer_token", Rejected, "the bearer token was refused, with USER_SOURCE=bearer:... (401)"),
    r(Reason::IdentityRequired, "identity_required", Rejected, "no identity and USER_DEFAULT=none (401)"),
    r(Reason::UpstreamUnavailable, "upstream_unavailable", UpstreamError, "the upstream could not be reached or answered wrongly (502)"),
    r(Reason::UpstreamTimeout, "upstream_timeout", UpstreamError, "the upstream did not answer within UPSTREAM_TIMEOUT_MS (504)"),
    r(Reason::InternalError, "internal_error", Failed, "a failure inside the proxy (500)"),
    r(Reason::ClientGone, "client_gone", Failed, "the client went away before its answer"),
    r(Reason::DrainCut, "drain_cut", Failed, "still in flight when a stop's grace period ended"),
];

impl Reason {
    pub fn info(self) -> &'static ReasonInfo {
        &REASONS[self as usize]
    }

    pub fn as_str(self) -> &'static str {
        self.info().name
    }

    /// The reason of an error reply, from its `error` code.
    pub fn of_code(code: &str) -> Reason {
        REASONS
            .iter()
            .find(|i| i.name == code && i.reason != Reason::Forwarded)
            .map_or(Reason::InternalError, |i| i.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::identity::Rejection;
    use crate::http::reply::*;
    use crate::signing::verification::BearerError;

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
    fn every_error_code_has_its_own_reason_and_outcome() {
        let replies = [
            METHOD_NOT_ALLOWED,
            BODY_TOO_LARGE,
            HEADERS_TOO_LARGE,
            INVALID_FRAMING,
            INVALID_TARGET,
            BAD_GATEWAY,
            GATEWAY_TIMEOUT,
            BAD_REQUEST,
            REQUEST_TIMEOUT,
            INTERNAL,
        ];
        let rejections = [
            Rejection::InvalidUser("x"),
            Rejection::AmbiguousUser,
            Rejection::BadJson("x"),
            Rejection::Bearer(BearerError::BadUserClaim),
            Rejection::Bearer(BearerError::Expired),
            Rejection::Missing,
        ];
        let codes = replies
            .iter()
            .map(|r| (r.code, r.outcome()))
            .chain(rejections.iter().map(|r| (r.code(), Outcome::Rejected)));
        for (code, outcome) in codes {
            let reason = Reason::of_code(code);
            assert_eq!(reason.as_str(), code);
            assert_eq!(reason.info().outcome, outcome, "{code}");
        }
    }
}
