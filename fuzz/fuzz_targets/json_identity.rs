//! JSON-body identity extraction (`USER_SOURCE=json:user`), checked against serde_json's own
//! reading of the same body.
#![no_main]

use jwt_proxy::identity::{check_user, from_json};
use libfuzzer_sys::fuzz_target;

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
        // We accept up to 128 levels; serde_json's own counting may stop one short. Numbers
        // are skipped, not converted: 1e400 is the upstream's to judge (Python reads inf).
        Err(e)
            if e.to_string().contains("recursion limit")
                || e.to_string().contains("number out of range") =>
        {
            return
        }
        Err(e) => panic!("accepted a body serde_json refuses: {e}"),
    };
    let object = parsed.as_object().expect("accepted bodies are objects");
    match found {
        Some(user) => {
            check_user(&user).expect("accepted users meet the user rules");
            assert_eq!(object.get("user").and_then(|v| v.as_str()), Some(user.as_str()));
        }
        None => assert!(
            matches!(object.get("user"), None)
                || object.get("user").and_then(|v| v.as_str()) == Some(""),
            "a user was there: {parsed}"
        ),
    }
});
