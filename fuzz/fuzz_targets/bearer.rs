//! Bearer-token parsing: raw `Authorization` values, and tokens whose header and claims the
//! fuzzer chooses but which carry a valid HS512 signature (so the claim checks are reached).
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use jwt_proxy::http::identity::{self, check_user};
use jwt_proxy::signing::key::{Key, KeyEncoding, DEMO_SECRET};
use jwt_proxy::signing::verification::{decode_parts, BearerVerifier};
use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static (BearerVerifier, Key) {
    static V: OnceLock<(BearerVerifier, Key)> = OnceLock::new();
    V.get_or_init(|| {
        let key = Key::decode(DEMO_SECRET, KeyEncoding::Text).expect("demo key");
        (BearerVerifier::new(&key), key)
    })
}

fn signed(header: &[u8], claims: &[u8], key: &Key) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = <Hmac<sha2::Sha512> as KeyInit>::new_from_slice(key.bytes()).expect("key");
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fuzz_target!(|data: &[u8]| {
    let (verifier, key) = verifier();
    let _ = identity::from_bearer(std::iter::once(data), verifier);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode_parts(text);
    }
    let Some(split) = data.iter().position(|&b| b == 0xff) else {
        return;
    };
    let (header, claims) = (&data[..split], &data[split + 1..]);
    let value = format!("Bearer {}", signed(header, claims, key));
    if let Ok(Some(user)) = identity::from_bearer(std::iter::once(value.as_bytes()), verifier) {
        // Accepted: the user meets the rules and is what the claims say, and the header named
        // the algorithm that actually signed it.
        check_user(&user).expect("accepted users meet the user rules");
        let h: serde_json::Value = serde_json::from_slice(header).expect("header is JSON");
        assert_eq!(
            h["alg"], "HS512",
            "accepted a token whose alg is not its signature's"
        );
        let c: serde_json::Value = match serde_json::from_slice(claims) {
            Ok(c) => c,
            // Claims we ignore are skipped, not converted (1e400 is not our business).
            Err(e)
                if ["number out of range", "lone leading surrogate"]
                    .iter()
                    .any(|m| e.to_string().contains(m)) =>
            {
                return
            }
            Err(e) => panic!("accepted claims serde_json refuses: {e}"),
        };
        let named = c
            .get("user")
            .or_else(|| c.get("sub"))
            .and_then(|v| v.as_str());
        assert_eq!(named, Some(user.as_str()));
    }
});
