//! JSON-body identity extraction (`USER_SOURCE=json:user`), checked against serde_json's own
//! reading of the same body.
#![no_main]

use jwt_proxy::http::identity::{check_user, from_json};
use libfuzzer_sys::fuzz_target;

const SKIPPED_ONLY: &[&str] = &[
    "recursion limit",
    "number out of range",
    "lone leading surrogate",
    "unexpected end of hex escape",
];

fuzz_target!(|data: &[u8]| {
    let found = from_json(data, "user");
    if data.iter().all(u8::is_ascii_whitespace) {
        assert_eq!(found, Ok(None));
        return;
    }
    let Ok(found) = found else {
        return;
    };
    let parsed: serde_json::Value = match serde_json::from_slice(data) {
        Ok(v) => v,
        // Grammatical JSON that serde_json's Value refuses and that we only skip: up to 128
        // levels (its own counting may stop one short), numbers out of f64 range (Python reads
        // inf), lone surrogate escapes in skipped strings (Python keeps them). Those bytes are
        // forwarded as sent; the upstream judges them.
        Err(e) if SKIPPED_ONLY.iter().any(|m| e.to_string().contains(m)) => return,
        Err(e) => panic!("accepted a body serde_json refuses: {e}"),
    };
    let object = parsed.as_object().expect("accepted bodies are objects");
    match found {
        Some(user) => {
            check_user(&user).expect("accepted users meet the user rules");
            assert_eq!(
                object.get("user").and_then(|v| v.as_str()),
                Some(user.as_str())
            );
        }
        None => assert!(
            matches!(object.get("user"), None)
                || object.get("user").and_then(|v| v.as_str()) == Some(""),
            "a user was there: {parsed}"
        ),
    }
});
