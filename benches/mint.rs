//! Cost of minting one token as the proxy does (jti from the CSPRNG, clock read, claims, date,
//! HMAC-SHA512, base64url, header value), beside a naive `jsonwebtoken::encode` of the same claims.

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderValue;
use jwt_proxy::token::{Jti, Key, KeyEncoding, Minter, TokenSettings, DEMO_SECRET};

fn mint(c: &mut Criterion) {
    let key = Key::decode(DEMO_SECRET, KeyEncoding::Text).unwrap();
    let minter = Minter::new(
        &key,
        &TokenSettings {
            ttl_secs: Some(300),
            ..Default::default()
        },
    );
    let mut group = c.benchmark_group("mint");
    group.bench_function(
        "jwt-proxy Minter (jti + clock + sign + header value)",
        |b| {
            b.iter(|| {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let minted = minter.mint(black_box("alice"), now, &Jti::random());
                HeaderValue::from_maybe_shared(Bytes::from(minted.token)).unwrap()
            })
        },
    );
    let enc = jsonwebtoken::EncodingKey::from_secret(key.bytes()).unwrap();
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512);
    group.bench_function("naive jsonwebtoken::encode (same claims)", |b| {
        b.iter(|| {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
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
