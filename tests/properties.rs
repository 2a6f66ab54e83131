//! Property tests of the pure modules (proptest).

use std::collections::{BTreeMap, HashSet};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use jwt_proxy::config::{Config, SETTINGS};
use jwt_proxy::http::identity::check_user;
use jwt_proxy::signing::key::{Key, KeyEncoding, PrivateKey, DEMO_SECRET};
use jwt_proxy::signing::minting::{Jti, Minter, TokenSettings};
use jwt_proxy::signing::verification::decode_parts;
use proptest::prelude::*;

fn minter(ttl: Option<u64>) -> (Minter, Key) {
    let key = Key::decode(DEMO_SECRET, KeyEncoding::Text).unwrap();
    (
        Minter::new(
            &PrivateKey::Hs512(key.clone()),
            None,
            &TokenSettings {
                ttl_secs: ttl,
                ..Default::default()
            },
        ),
        key,
    )
}

fn verify(token: &str, key: &Key) -> serde_json::Value {
    let mut v = Validation::new(Algorithm::HS512);
    v.required_spec_claims.clear();
    v.validate_exp = false; // the times here are arbitrary
    jsonwebtoken::decode::<serde_json::Value>(
        token,
        &DecodingKey::from_secret(key.bytes()).unwrap(),
        &v,
    )
    .expect("verifies")
    .claims
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any valid user string arrives in the token exactly as given.
    #[test]
    fn valid_users_round_trip_exactly(user in "[^\\p{C}\\p{Z}\\p{Default_Ignorable_Code_Point}\\u{2800}\\u{1D159}\\u{16FE4}]{1,80}", now in 0u64..4_102_444_800) {
        prop_assume!(check_user(&user).is_ok());
        let (m, key) = minter(Some(300));
        let minted = m.mint(&user, now, &Jti::random());
        let claims = verify(&minted.token, &key);
        prop_assert_eq!(claims["payload"]["user"].as_str(), Some(user.as_str()));
        prop_assert_eq!(claims["iat"].as_u64(), Some(now));
        prop_assert_eq!(claims["exp"].as_u64(), Some(now + 300));
        let (_, decoded) = decode_parts(&minted.token).unwrap();
        prop_assert_eq!(decoded, claims);
    }

    /// Minted tokens always verify, and a batch never repeats a jti.
    #[test]
    fn minted_tokens_verify_and_never_repeat_a_jti(users in prop::collection::vec("[a-z0-9@. ]{1,40}", 1..64)) {
        let (m, key) = minter(None);
        let mut seen = HashSet::new();
        for u in &users {
            let claims = verify(&m.mint(u, 1_700_000_000, &Jti::random()).token, &key);
            prop_assert!(seen.insert(claims["jti"].as_str().unwrap().to_string()));
        }
    }

    /// Any configuration input either parses or is refused with an error naming a setting it set.
    #[test]
    fn any_config_parses_or_names_its_setting(
        pairs in prop::collection::vec((0..SETTINGS.len(), "\\PC{0,12}|[0-9]{1,6}|-?[0-9]+|(text|hex|base64|header:x|json:u|bearer|static:a|http://127.0.0.1:1/p)"), 0..6)
    ) {
        let env: BTreeMap<&str, String> = pairs.iter().map(|(i, v)| (SETTINGS[*i].0, v.clone())).collect();
        // The demo key is allowed unless the input says otherwise (no key at all is refused).
        let lookup = |k: &str| env.get(k).cloned().or_else(|| (k == "JWT_DEMO_KEY").then(|| "true".into()));
        if let Err(e) = Config::from_yaml("", &lookup) {
            let set = |k: &str| env.contains_key(k);
            // Errors about how two settings combine name the one that has to change.
            let named = set(e.setting())
                // a bad encoding makes the given key fail under it
                || (e.setting() == "JWT_SECRET" && (set("JWT_SECRET_ENCODING") || set("JWT_DEMO_KEY")))
                || (e.setting() == "BEARER_SECRET" && set("BEARER_SECRET_ENCODING"))
                || (e.setting() == "grace_period_seconds" && (set("UPSTREAM_TIMEOUT_MS") || set("DRAIN_IDLE_SECS")))
                || (e.setting() == "STATUS_TOKEN" && set("STATUS_ADDR"))
                || (e.setting() == "STATUS_PORT" && (set("HTTP_PORT") || set("LISTEN_ADDR") || set("STATUS_ADDR")));
            prop_assert!(named, "{} names a setting the input did not set ({:?})", e, env);
            let prefix = format!("config error: {}: ", e.setting());
            prop_assert!(e.to_string().starts_with(&prefix), "{}", e);
        }
    }
}
