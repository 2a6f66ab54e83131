//! The keys a running proxy holds and the rules that make rotation safe by construction. Pure:
//! every decision takes `now` (Unix seconds) from the caller.
//!
//! - A key that becomes `signing` signs only once it has been published for the publish lead;
//!   until then the key that was signing keeps signing (`signer_at`).
//! - A key removed from the file stays published, not signing, until every token it may have
//!   signed has expired (its last signing time + TTL + leeway); a key that never signed goes at
//!   once, and `revoked` forces a key out at once (if it was signing, the new one signs now).
//! - A kid keeps its key material for as long as it is held: a reload that gives a held kid
//!   other material is refused (a verifier caching the old key would refuse the new tokens).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::keys::Alg;
use crate::keyset::{KeyEntry, Keyset};
use crate::minting::{Minter, TokenSettings};

/// Verifiers' clock leeway added to the TTL before a removed key is dropped (the default of
/// common JWT libraries, e.g. 60 s in jsonwebtoken).
pub const RETIRE_LEEWAY_SECS: u64 = 60;

/// Timing rules of a keyset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationSettings {
    /// How long a key is published before it may sign.
    pub publish_lead_secs: u64,
    /// How long a key stays published after it last signed (TTL + leeway).
    pub retire_after_secs: u64,
}

struct Held {
    entry: KeyEntry,
    minter: Minter,
    /// When this process first held it.
    published_at: u64,
    /// Up to when it may have signed: `None` if it never signed. For the key signing now, the
    /// time it started; `signing_until` tells the rest.
    signed_until: Option<u64>,
    /// Removed from the file: published until then, never signing again.
    drop_at: Option<u64>,
}

/// The keys held, which one signs when, and the JWKS they publish. Replaced whole on a reload
/// (callers swap an `Arc`), so a request sees one ring or the next, never half of one.
pub struct KeyRing {
    held: Vec<Held>,
    /// Index of the key the file says signs.
    wanted: usize,
    /// Index of the key that signs until `switch_at` (`None`: `wanted` signs already).
    previous: Option<usize>,
    switch_at: u64,
    settings: RotationSettings,
    tokens: TokenSettings,
    jwks: Jwks,
}

/// The published JWKS document and its entity tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwks {
    pub body: String,
    pub etag: String,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.held.iter().map(|h| h.entry.kid.as_str()).collect();
        write!(
            f,
            "KeyRing({kids:?}, signing {})",
            self.held[self.wanted].entry.kid
        )
    }
}

fn minter(entry: &KeyEntry, tokens: &TokenSettings) -> Minter {
    let kid = (!entry.kid.is_empty()).then_some(entry.kid.as_str());
    Minter::new(&entry.key, kid, tokens)
}

impl KeyRing {
    /// The ring at start-up: every key published from `now`, the file's signing key signing at
    /// once (nothing was signed before this process).
    pub fn new(
        set: &Keyset,
        settings: RotationSettings,
        tokens: &TokenSettings,
        now: u64,
    ) -> KeyRing {
        let held: Vec<Held> = set
            .keys
            .iter()
            .map(|e| Held {
                minter: minter(e, tokens),
                entry: e.clone(),
                published_at: now,
                signed_until: (e.kid == set.signing).then_some(now),
                drop_at: None,
            })
            .collect();
        let wanted = held
            .iter()
            .position(|h| h.entry.kid == set.signing)
            .unwrap_or(0);
        KeyRing::assemble(held, wanted, None, 0, settings, tokens.clone())
    }

    fn assemble(
        held: Vec<Held>,
        wanted: usize,
        previous: Option<usize>,
        switch_at: u64,
        settings: RotationSettings,
        tokens: TokenSettings,
    ) -> KeyRing {
        let jwks = jwks_of(&held);
        KeyRing {
            held,
            wanted,
            previous,
            switch_at,
            settings,
            tokens,
            jwks,
        }
    }

    fn index(&self, kid: &str) -> Option<usize> {
        self.held.iter().position(|h| h.entry.kid == kid)
    }

    /// Index of the key that signs at `now`.
    fn signer_index(&self, now: u64) -> usize {
        match self.previous {
            Some(p) if now < self.switch_at => p,
            _ => self.wanted,
        }
    }

    /// The minter of the key that signs at `now`.
    pub fn minter_at(&self, now: u64) -> &Minter {
        &self.held[self.signer_index(now)].minter
    }

    /// The kid that signs at `now`.
    pub fn signer_at(&self, now: u64) -> &str {
        &self.held[self.signer_index(now)].entry.kid
    }

    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    /// The ring after the file changed to `set` at `now`, or why the new set is refused (the
    /// caller keeps this ring).
    pub fn reload(&self, set: &Keyset, now: u64) -> Result<KeyRing, String> {
        let signing_now = self.signer_index(now);
        let mut held = Vec::new();
        // Keys in the new file: kept (with their publish time) or new.
        for e in &set.keys {
            match self.index(&e.kid) {
                Some(i) if self.held[i].entry.key != e.key => {
                    return Err(format!(
                        "key {} has other key material than the key held under that kid; \
                         give a new key a new kid (or revoke the old one first)",
                        e.kid
                    ))
                }
                Some(i) => {
                    let h = &self.held[i];
                    held.push(Held {
                        entry: h.entry.clone(),
                        minter: h.minter.clone(),
                        published_at: h.published_at,
                        signed_until: h.signed_until,
                        drop_at: None,
                    });
                }
                None => held.push(Held {
                    minter: minter(e, &self.tokens),
                    entry: e.clone(),
                    published_at: now,
                    signed_until: None,
                    drop_at: None,
                }),
            }
        }
        let wanted = held
            .iter()
            .position(|h| h.entry.kid == set.signing)
            .ok_or_else(|| format!("signing names {:?}, which is not in keys", set.signing))?;
        let current = &self.held[signing_now];
        let current_revoked = set.revoked.contains(&current.entry.kid);
        // Who signs now, and from when the wanted key takes over.
        let (previous, switch_at) = if held[wanted].entry.kid == current.entry.kid
            || current_revoked
            || held[wanted].published_at + self.settings.publish_lead_secs <= now
        {
            (None, 0)
        } else {
            let switch_at = held[wanted].published_at + self.settings.publish_lead_secs;
            match held.iter().position(|h| h.entry.kid == current.entry.kid) {
                Some(p) => (Some(p), switch_at),
                None => {
                    // The signing key left the file: it stays, retiring, and signs until then.
                    held.push(Held {
                        entry: current.entry.clone(),
                        minter: current.minter.clone(),
                        published_at: current.published_at,
                        signed_until: current.signed_until,
                        drop_at: Some(switch_at + self.settings.retire_after_secs),
                    });
                    (Some(held.len() - 1), switch_at)
                }
            }
        };
        // Signing times: the old signer signed until now (or until the switch); the new one
        // signs from when it takes over.
        let stop_old = previous.map_or(now, |_| switch_at);
        for h in held.iter_mut() {
            if h.entry.kid == current.entry.kid {
                h.signed_until = Some(stop_old);
            }
        }
        if held[wanted].signed_until.is_none() {
            held[wanted].signed_until = Some(now.max(switch_at));
        }
        // Keys that left the file: retiring until their tokens expired, or gone.
        for old in &self.held {
            let kept = held.iter().any(|h| h.entry.kid == old.entry.kid);
            if kept || set.revoked.contains(&old.entry.kid) {
                continue;
            }
            let last = if old.entry.kid == current.entry.kid {
                Some(now)
            } else {
                old.signed_until
            };
            let drop_at = match (old.drop_at, last) {
                (Some(d), _) => d,
                (None, Some(t)) => t + self.settings.retire_after_secs,
                (None, None) => now,
            };
            if drop_at > now {
                held.push(Held {
                    entry: old.entry.clone(),
                    minter: old.minter.clone(),
                    published_at: old.published_at,
                    signed_until: old.signed_until,
                    drop_at: Some(drop_at),
                });
            }
        }
        Ok(KeyRing::assemble(
            held,
            wanted,
            previous,
            switch_at,
            self.settings,
            self.tokens.clone(),
        ))
    }

    /// The ring without the retiring keys whose time is up at `now`, if any are; `None` when
    /// nothing changes.
    pub fn prune(&self, now: u64) -> Option<KeyRing> {
        let signer = self.signer_index(now);
        let expired = |i: usize, h: &Held| i != signer && h.drop_at.is_some_and(|d| d <= now);
        if !self.held.iter().enumerate().any(|(i, h)| expired(i, h)) {
            return None;
        }
        let keep: Vec<usize> = (0..self.held.len())
            .filter(|&i| !expired(i, &self.held[i]))
            .collect();
        let new_index = |old: usize| keep.iter().position(|&i| i == old);
        let held: Vec<Held> = keep
            .iter()
            .map(|&i| {
                let h = &self.held[i];
                Held {
                    entry: h.entry.clone(),
                    minter: h.minter.clone(),
                    published_at: h.published_at,
                    signed_until: h.signed_until,
                    drop_at: h.drop_at,
                }
            })
            .collect();
        let wanted = new_index(self.wanted)?;
        let previous = self.previous.and_then(new_index);
        Some(KeyRing::assemble(
            held,
            wanted,
            previous,
            self.switch_at,
            self.settings,
            self.tokens.clone(),
        ))
    }

    /// What the status service shows: for each key its kid, alg, fingerprint and state, and
    /// when a pending switch happens. Times are Unix seconds.
    pub fn describe(&self, now: u64) -> Value {
        let signer = self.signer_index(now);
        let keys: Vec<Value> = self
            .held
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let state = if i == signer {
                    "signing"
                } else if i == self.wanted {
                    "pending"
                } else if h.drop_at.is_some() {
                    "retiring"
                } else {
                    "published"
                };
                json!({
                    "kid": h.entry.kid,
                    "alg": h.entry.key.alg().as_str(),
                    "fingerprint": h.entry.key.fingerprint(),
                    "state": state,
                    "published_at": h.published_at,
                    "in_jwks": h.entry.key.alg().is_asymmetric(),
                    "dropped_at": h.drop_at,
                })
            })
            .collect();
        let pending = (signer != self.wanted).then(
            || json!({"kid": self.held[self.wanted].entry.kid, "signs_from": self.switch_at}),
        );
        json!({
            "signing": self.held[signer].entry.kid,
            "switch": pending,
            "keys": keys,
            "publish_lead_secs": self.settings.publish_lead_secs,
        })
    }

    /// Every kid held, with its algorithm.
    pub fn kids(&self) -> Vec<(String, Alg)> {
        self.held
            .iter()
            .map(|h| (h.entry.kid.clone(), h.entry.key.alg()))
            .collect()
    }
}

fn jwks_of(held: &[Held]) -> Jwks {
    let keys: Vec<Value> = held
        .iter()
        .filter_map(|h| h.entry.key.public_jwk(&h.entry.kid))
        .collect();
    let body = json!({ "keys": keys }).to_string();
    let digest = Sha256::digest(body.as_bytes());
    let etag = format!(
        "\"{}\"",
        digest[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    Jwks { body, etag }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;
    use crate::minting::Jti;
    use crate::verification::decode_parts;

    const LEAD: u64 = 600;
    const RETIRE: u64 = 360;
    const T0: u64 = 1_800_000_000;

    fn settings() -> RotationSettings {
        RotationSettings {
            publish_lead_secs: LEAD,
            retire_after_secs: RETIRE,
        }
    }

    fn set(keys: &[(&str, &PrivateKey)], signing: &str, revoked: &[&str]) -> Keyset {
        Keyset {
            keys: keys
                .iter()
                .map(|(kid, key)| KeyEntry {
                    kid: kid.to_string(),
                    key: (*key).clone(),
                })
                .collect(),
            signing: signing.into(),
            revoked: revoked.iter().map(|s| s.to_string()).collect(),
            files: vec![],
        }
    }

    /// The ring at start-up (`T0`) with these keys.
    fn start(keys: &[(&str, &PrivateKey)], signing: &str) -> KeyRing {
        KeyRing::new(
            &set(keys, signing, &[]),
            settings(),
            &Default::default(),
            T0,
        )
    }

    fn kid_of_token(ring: &KeyRing, now: u64) -> String {
        let t = ring
            .minter_at(now)
            .mint("u", now, &Jti::from_bytes([1; 16]));
        let (h, _) = decode_parts(&t.token).unwrap();
        h["kid"].as_str().unwrap().to_string()
    }

    fn jwks_kids(ring: &KeyRing) -> Vec<String> {
        let v: Value = serde_json::from_str(&ring.jwks().body).unwrap();
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn the_issue_s_rotation_keeps_the_lead_and_the_retire_window() {
        let k1 = PrivateKey::generate(Alg::Hs512);
        let k2 = PrivateKey::generate(Alg::EdDsa);
        let ring = start(&[("k1", &k1)], "k1");
        assert_eq!(kid_of_token(&ring, T0), "k1");
        assert!(jwks_kids(&ring).is_empty(), "HMAC keys are never published");

        // k2 added: published at once, k1 still signs.
        let t1 = T0 + 10;
        let ring = ring
            .reload(&set(&[("k1", &k1), ("k2", &k2)], "k1", &[]), t1)
            .unwrap();
        assert_eq!(jwks_kids(&ring), ["k2"]);
        assert_eq!(kid_of_token(&ring, t1), "k1");

        // signing: k2 only 5 s later: k1 signs until k2 has been published for the lead.
        let t2 = t1 + 5;
        let ring = ring
            .reload(&set(&[("k1", &k1), ("k2", &k2)], "k2", &[]), t2)
            .unwrap();
        assert_eq!(kid_of_token(&ring, t2), "k1");
        assert_eq!(kid_of_token(&ring, t1 + LEAD - 1), "k1");
        assert_eq!(kid_of_token(&ring, t1 + LEAD), "k2");
        let d = ring.describe(t2);
        assert_eq!(d["signing"], "k1");
        assert_eq!(d["switch"], json!({"kid": "k2", "signs_from": t1 + LEAD}));

        // k1 removed before the switch: it keeps signing until then, and stays held until its
        // last token expired.
        let t3 = t2 + 1;
        let ring = ring.reload(&set(&[("k2", &k2)], "k2", &[]), t3).unwrap();
        assert_eq!(kid_of_token(&ring, t3), "k1");
        assert_eq!(kid_of_token(&ring, t1 + LEAD), "k2");
        assert!(ring.prune(t1 + LEAD + RETIRE - 1).is_none());
        let ring = ring.prune(t1 + LEAD + RETIRE).expect("k1 dropped");
        assert_eq!(ring.kids(), [("k2".to_string(), Alg::EdDsa)]);
    }

    #[test]
    fn a_key_already_published_long_enough_signs_at_once() {
        let k1 = PrivateKey::generate(Alg::EdDsa);
        let k2 = PrivateKey::generate(Alg::Es256);
        let ring = start(&[("k1", &k1), ("k2", &k2)], "k1");
        let t = T0 + LEAD;
        let ring = ring
            .reload(&set(&[("k1", &k1), ("k2", &k2)], "k2", &[]), t)
            .unwrap();
        assert_eq!(kid_of_token(&ring, t), "k2");
        // k1 signed until t: removed now, it stays for the retire window.
        let ring = ring.reload(&set(&[("k2", &k2)], "k2", &[]), t + 1).unwrap();
        assert_eq!(jwks_kids(&ring), ["k2", "k1"]);
        assert!(ring.prune(t + RETIRE - 1).is_none());
        assert_eq!(jwks_kids(&ring.prune(t + RETIRE).unwrap()), ["k2"]);
    }

    #[test]
    fn a_key_that_never_signed_goes_at_once_and_revoked_keys_go_at_once() {
        let k1 = PrivateKey::generate(Alg::EdDsa);
        let k2 = PrivateKey::generate(Alg::EdDsa);
        let ring = start(&[("k1", &k1), ("k2", &k2)], "k1");
        let ring = ring
            .reload(&set(&[("k1", &k1)], "k1", &[]), T0 + 1)
            .unwrap();
        assert_eq!(jwks_kids(&ring), ["k1"], "k2 never signed");
        // Revoking the signing key: the new key signs at once, lead or not.
        let ring = ring
            .reload(&set(&[("k1", &k1), ("k2", &k2)], "k1", &[]), T0 + 2)
            .unwrap();
        let ring = ring
            .reload(&set(&[("k2", &k2)], "k2", &["k1"]), T0 + 3)
            .unwrap();
        assert_eq!(kid_of_token(&ring, T0 + 3), "k2");
        assert_eq!(jwks_kids(&ring), ["k2"]);
    }

    #[test]
    fn a_held_kid_cannot_change_its_material() {
        let k1 = PrivateKey::generate(Alg::EdDsa);
        let other = PrivateKey::generate(Alg::EdDsa);
        let ring = start(&[("k1", &k1)], "k1");
        let e = ring
            .reload(&set(&[("k1", &other)], "k1", &[]), T0 + 1)
            .unwrap_err();
        assert!(e.contains("other key material"), "{e}");
    }

    #[test]
    fn the_jwks_etag_follows_its_contents() {
        let k1 = PrivateKey::generate(Alg::EdDsa);
        let k2 = PrivateKey::generate(Alg::Es256);
        let a = start(&[("k1", &k1)], "k1");
        let b = a.reload(&set(&[("k1", &k1)], "k1", &[]), T0 + 1).unwrap();
        assert_eq!(a.jwks(), b.jwks());
        let c = b
            .reload(&set(&[("k1", &k1), ("k2", &k2)], "k1", &[]), T0 + 2)
            .unwrap();
        assert_ne!(c.jwks().etag, a.jwks().etag);
        let v: Value = serde_json::from_str(&c.jwks().body).unwrap();
        assert_eq!(v["keys"][1]["kty"], "EC");
        assert_eq!(v["keys"][1]["alg"], "ES256");
        assert_eq!(v["keys"][1]["use"], "sig");
        assert_eq!(v["keys"][0]["crv"], "Ed25519");
        assert!(v["keys"][0].get("d").is_none(), "never the private part");
    }
}
