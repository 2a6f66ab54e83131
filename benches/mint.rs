//! Cost of minting one token as the proxy does (jti from the CSPRNG, clock read, claims, date,
//! signature, base64url, header value) with each algorithm, through the live keys as a request
//! does (read lock, signer by time), beside a naive `jsonwebtoken::encode` of the same claims.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderValue;
use jwt_proxy::observe::stats::Stats;
use jwt_proxy::signing::key::{Alg, Key, KeyEncoding, PrivateKey, DEMO_SECRET};
use jwt_proxy::signing::keyset::Keyset;
use jwt_proxy::signing::live::LiveKeys;
use jwt_proxy::signing::minting::{Jti, TokenSettings};
use jwt_proxy::signing::ring::RotationSettings;
use jwt_proxy::signing::KeyConfig;

/// Unix ms, as a request reads the clock.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn mint(c: &mut Criterion) {
    let tokens = TokenSettings {
        ttl_secs: Some(300),
        ..Default::default()
    };
    let mut group = c.benchmark_group("mint");
    for alg in Alg::ALL {
        let key = match alg {
            Alg::Hs512 => PrivateKey::Hs512(Key::decode(DEMO_SECRET, KeyEncoding::Text).unwrap()),
            _ => PrivateKey::generate(alg),
        };
        let config = KeyConfig {
            set: Keyset::single(key, Some("k1".into())),
            path: None,
            encoding: KeyEncoding::Text,
            rotation: RotationSettings {
                publish_lead_secs: 600,
                retire_after_secs: 360,
            },
            jwks_max_age_secs: 300,
        };
        let keys = LiveKeys::new(&config, &tokens, None, Arc::new(Stats::new(10, 1 << 20)))
            .expect("a one-key set");
        group.bench_function(
            format!("jwt-proxy {alg} (jti + clock + sign + header value)"),
            |b| {
                b.iter(|| {
                    let minted = keys.mint(black_box("alice"), now(), &Jti::random());
                    HeaderValue::from_maybe_shared(Bytes::from(minted.token)).unwrap()
                })
            },
        );
    }
    let key = Key::decode(DEMO_SECRET, KeyEncoding::Text).unwrap();
    let enc = jsonwebtoken::EncodingKey::from_secret(key.bytes()).unwrap();
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512);
    group.bench_function("naive jsonwebtoken::encode HS512 (same claims)", |b| {
        b.iter(|| {
            let now = now() / 1000;
            let claims = serde_json::json!({
                "iat": now, "exp": now + 300, "jti": Jti::random().to_string(),
                "payload": {"user": black_box("alice"), "date": chrono::Utc::now().format("%Y-%m-%d").to_string()},
            });
            jsonwebtoken::encode(&header, &claims, &enc).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, mint);
criterion_main!(benches);
