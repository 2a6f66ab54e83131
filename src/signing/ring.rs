//! The keys a running proxy holds and the rules that make rotation safe by construction. Pure:
//! every decision takes `now` (Unix milliseconds) from the caller.
//!
//! - A key that becomes `signing` signs only once it has been published for the publish lead;
//!   until then the key that was signing keeps signing (`signer_at`).
//! - A key removed from the file stays published, not signing, until every token it may have
//!   signed has expired (its last signing time + TTL + leeway); a key that never signed goes at
//!   once, and `revoked` forces a key out at once (if it was signing, the new one signs now).
//! - A kid keeps its key material for as long as it is held: a reload that gives a held kid
//!   other material is refused (a verifier caching the old key would refuse the new tokens).
//! - The state (what is held since when, what signed until when) outlives the process: a new
//!   process (upgrade, restart) resumes from [`KeyRing::state`] and applies the same rules
//!   ([`KeyRing::resume`]); keys known only from that state are published, never signing.

use serde_json::{json, Value};

use crate::signing::jwks::{public_jwk, Jwks};
use crate::signing::key::Alg;
use crate::signing::keyset::{KeyEntry, Keyset};
use crate::signing::minting::{Minter, TokenSettings};

/// Verifiers' clock leeway added to the TTL before a removed key is dropped (the default of
/// common JWT libraries, e.g. 60 s in jsonwebtoken).
pub(crate) const RETIRE_LEEWAY_SECS: u64 = 60;

/// Version of the saved state's format.
const STATE_VERSION: u64 = 1;

/// Timing rules of a keyset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationSettings {
    /// How long a key is published before it may sign.
    pub publish_lead_secs: u64,
    /// How long a key stays published after it last signed (TTL + leeway).
    pub retire_after_secs: u64,
}

impl RotationSettings {
    fn lead_ms(&self) -> u64 {
        self.publish_lead_secs * 1000
    }

    fn retire_ms(&self) -> u64 {
        self.retire_after_secs * 1000
    }
}

#[derive(Clone)]
struct Held {
    kid: String,
    alg: Alg,
    /// Identifies the key material (public-key fingerprint; for HMAC, the secret's).
    fingerprint: String,
    /// `None` for a key known only from a previous process's state: published, never signing.
    minter: Option<Minter>,
    /// The public JWK (asymmetric keys only).
    jwk: Option<Value>,
    /// When it was first held (by this process or the one whose state it resumed).
    published_at: u64,
    /// Up to when it may have signed: `None` if it never signed.
    signed_until: Option<u64>,
    /// Removed from the file: published until then, never signing again.
    drop_at: Option<u64>,
}

impl Held {
    fn from_entry(e: &KeyEntry, tokens: &TokenSettings, now: u64) -> Held {
        let kid = (!e.kid.is_empty()).then_some(e.kid.as_str());
        Held {
            kid: e.kid.clone(),
            alg: e.key.alg(),
            fingerprint: e.key.fingerprint(),
            minter: Some(Minter::new(&e.key, kid, tokens)),
            jwk: e.key.public_jwk(&e.kid),
            published_at: now,
            signed_until: None,
            drop_at: None,
        }
    }
}

/// The keys held, which one signs when, and the JWKS they publish. Replaced whole on a reload
/// (callers swap an `Arc`), so a request sees one ring or the next, never half of one.
pub struct KeyRing {
    held: Vec<Held>,
    /// Index of the key the file says signs (always from the file: it has a minter).
    wanted: usize,
    /// Index of the key that signs until `switch_at` (`None`: `wanted` signs already); only
    /// a key with a minter.
    previous: Option<usize>,
    switch_at: u64,
    settings: RotationSettings,
    tokens: TokenSettings,
    jwks: Jwks,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.held.iter().map(|h| h.kid.as_str()).collect();
        write!(
            f,
            "KeyRing({kids:?}, signing {})",
            self.held[self.wanted].kid
        )
    }
}

impl KeyRing {
    /// The ring of a first start: every key published from `now`, the file's signing key
    /// signing at once (nothing was signed before).
    pub fn new(
        set: &Keyset,
        settings: RotationSettings,
        tokens: &TokenSettings,
        now: u64,
    ) -> KeyRing {
        let mut held: Vec<Held> = set
            .keys
            .iter()
            .map(|e| Held::from_entry(e, tokens, now))
            .collect();
        let wanted = held.iter().position(|h| h.kid == set.signing).unwrap_or(0);
        held[wanted].signed_until = Some(now);
        KeyRing::assemble(held, wanted, None, 0, settings, tokens.clone())
    }

    /// The ring of a process that takes over from one whose [`KeyRing::state`] it has: the
    /// keys, times and pending switch carry on, then the file is applied as a reload is. A
    /// state it cannot read is an error.
    pub fn resume(
        state: &Value,
        set: &Keyset,
        settings: RotationSettings,
        tokens: &TokenSettings,
        now: u64,
    ) -> Result<KeyRing, String> {
        // A state that cannot be read fails closed: starting afresh would drop retiring keys and
        // restart every lead, silently.
        KeyRing::from_state(state, settings, tokens)
            .ok_or_else(|| "it is not a key state this version reads".to_string())?
            .reload(set, now)
    }

    fn assemble(
        held: Vec<Held>,
        wanted: usize,
        previous: Option<usize>,
        switch_at: u64,
        settings: RotationSettings,
        tokens: TokenSettings,
    ) -> KeyRing {
        let jwks = Jwks::of(held.iter().filter_map(|h| h.jwk.as_ref()));
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
        self.held.iter().position(|h| h.kid == kid)
    }

    /// Index of the key scheduled to sign at `now`.
    fn scheduled_signer(&self, now: u64) -> usize {
        match self.previous {
            Some(p) if now < self.switch_at => p,
            _ => self.wanted,
        }
    }

    /// Index of the key that signs at `now`: the scheduled one, if this process has its key.
    fn signer_index(&self, now: u64) -> usize {
        match self.scheduled_signer(now) {
            p if self.held[p].minter.is_some() => p,
            _ => self.wanted,
        }
    }

    /// The minter of the key that signs at `now` (Unix ms).
    pub(crate) fn minter_at(&self, now: u64) -> &Minter {
        let i = self.signer_index(now);
        match (&self.held[i].minter, &self.held[self.wanted].minter) {
            (Some(m), _) | (None, Some(m)) => m,
            // `wanted` comes from the file, which always gives a minter.
            (None, None) => unreachable!("the wanted key has no minter"),
        }
    }

    /// The kid that signs at `now`.
    pub(crate) fn signer_at(&self, now: u64) -> &str {
        &self.held[self.signer_index(now)].kid
    }

    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    /// The ring after the file changed to `set` at `now`, or why the new set is refused (the
    /// caller keeps this ring).
    pub fn reload(&self, set: &Keyset, now: u64) -> Result<KeyRing, String> {
        // The key scheduled to sign now (after a resume, one this process may not have yet).
        let current = &self.held[self.scheduled_signer(now)];
        let mut held = Vec::new();
        // Keys in the new file: kept (with their times) or new.
        for e in &set.keys {
            let mut h = Held::from_entry(e, &self.tokens, now);
            if let Some(i) = self.index(&e.kid) {
                let old = &self.held[i];
                if old.alg != h.alg || old.fingerprint != h.fingerprint {
                    return Err(format!(
                        "key {} has other key material than the key held under that kid; \
                         give a new key a new kid (or revoke the old one first)",
                        e.kid
                    ));
                }
                h.published_at = old.published_at;
                h.signed_until = old.signed_until;
            }
            held.push(h);
        }
        let wanted = held
            .iter()
            .position(|h| h.kid == set.signing)
            .ok_or_else(|| format!("signing names {:?}, which is not in keys", set.signing))?;
        let in_file = held.iter().position(|h| h.kid == current.kid);
        // The key signing now can go on signing if the file still has it, or if this process
        // holds its private key; not if it was revoked.
        let current_can_sign =
            !set.revoked.contains(&current.kid) && (in_file.is_some() || current.minter.is_some());
        let lead_done = held[wanted]
            .published_at
            .saturating_add(self.settings.lead_ms())
            <= now;
        let (previous, switch_at) =
            if held[wanted].kid == current.kid || !current_can_sign || lead_done {
                (None, 0)
            } else {
                let switch_at = held[wanted]
                    .published_at
                    .saturating_add(self.settings.lead_ms());
                match in_file {
                    Some(p) => (Some(p), switch_at),
                    None => {
                        // The signing key left the file: it signs until then, then retires.
                        let mut h = current.clone();
                        h.drop_at = Some(switch_at.saturating_add(self.settings.retire_ms()));
                        held.push(h);
                        (Some(held.len() - 1), switch_at)
                    }
                }
            };
        // The key that signed until now signs until now (or until the switch); the wanted key
        // from when it takes over.
        let stop_old = previous.map_or(now, |_| switch_at);
        for h in held.iter_mut().filter(|h| h.kid == current.kid) {
            h.signed_until = Some(stop_old);
        }
        let starts = now.max(switch_at);
        let w = &mut held[wanted];
        w.signed_until = Some(w.signed_until.map_or(starts, |t| t.max(starts)));
        // Keys that left the file: retiring until their tokens expired, or gone.
        for old in &self.held {
            if held.iter().any(|h| h.kid == old.kid) || set.revoked.contains(&old.kid) {
                continue;
            }
            let last = if old.kid == current.kid {
                Some(now)
            } else {
                old.signed_until
            };
            let drop_at = match (old.drop_at, last) {
                // Never later than a retire window from now (a saved time is not trusted further).
                (Some(d), _) => d.min(now.saturating_add(self.settings.retire_ms())),
                (None, Some(t)) => t.saturating_add(self.settings.retire_ms()),
                (None, None) => now,
            };
            if drop_at > now {
                let mut h = old.clone();
                h.drop_at = Some(drop_at);
                held.push(h);
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
    pub(crate) fn prune(&self, now: u64) -> Option<KeyRing> {
        let signer = self.signer_index(now);
        let expired = |i: usize, h: &Held| i != signer && h.drop_at.is_some_and(|d| d <= now);
        if !self.held.iter().enumerate().any(|(i, h)| expired(i, h)) {
            return None;
        }
        let keep: Vec<usize> = (0..self.held.len())
            .filter(|&i| !expired(i, &self.held[i]))
            .collect();
        let new_index = |old: usize| keep.iter().position(|&i| i == old);
        let held: Vec<Held> = keep.iter().map(|&i| self.held[i].clone()).collect();
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

    /// What a process taking over needs ([`KeyRing::resume`]): kids, algorithms, fingerprints,
    /// public JWKs and times. Never key material.
    pub fn state(&self) -> Value {
        let keys: Vec<Value> = self
            .held
            .iter()
            .map(|h| {
                json!({
                    "kid": h.kid, "alg": h.alg.as_str(), "fingerprint": h.fingerprint,
                    "jwk": h.jwk, "published_at": h.published_at,
                    "signed_until": h.signed_until, "drop_at": h.drop_at,
                })
            })
            .collect();
        json!({
            "version": STATE_VERSION,
            "wanted": self.held[self.wanted].kid,
            "previous": self.previous.map(|p| self.held[p].kid.clone()),
            "switch_at": self.switch_at,
            "keys": keys,
        })
    }

    /// A ring of keys known only from a saved state (no minters): the starting point of
    /// [`KeyRing::resume`]. `None` for a state this version does not read.
    fn from_state(
        state: &Value,
        settings: RotationSettings,
        tokens: &TokenSettings,
    ) -> Option<KeyRing> {
        if state["version"].as_u64() != Some(STATE_VERSION) {
            return None;
        }
        let held: Vec<Held> = state["keys"]
            .as_array()?
            .iter()
            .map(|k| {
                Some(Held {
                    kid: k["kid"].as_str()?.to_string(),
                    alg: Alg::parse(k["alg"].as_str()?)?,
                    fingerprint: k["fingerprint"].as_str()?.to_string(),
                    minter: None,
                    jwk: public_jwk(
                        &k["jwk"],
                        k["kid"].as_str()?,
                        k["alg"].as_str()?,
                        k["fingerprint"].as_str()?,
                    ),
                    published_at: k["published_at"].as_u64()?,
                    signed_until: k["signed_until"].as_u64(),
                    drop_at: k["drop_at"].as_u64(),
                })
            })
            .collect::<Option<_>>()?;
        let find = |kid: &Value| {
            held.iter()
                .position(|h| Some(h.kid.as_str()) == kid.as_str())
        };
        let wanted = find(&state["wanted"])?;
        let previous = find(&state["previous"]);
        let switch_at = state["switch_at"].as_u64()?;
        Some(KeyRing::assemble(
            held,
            wanted,
            previous,
            switch_at,
            settings,
            tokens.clone(),
        ))
    }

    /// What the status service shows: for each key its kid, alg, fingerprint and state, and
    /// when a pending switch happens. Times are Unix milliseconds.
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
                    "kid": h.kid,
                    "alg": h.alg.as_str(),
                    "fingerprint": h.fingerprint,
                    "state": state,
                    "published_at_ms": h.published_at,
                    "in_jwks": h.jwk.is_some(),
                    "dropped_at_ms": h.drop_at,
                })
            })
            .collect();
        let pending = (signer != self.wanted)
            .then(|| json!({"kid": self.held[self.wanted].kid, "signs_from_ms": self.switch_at}));
        json!({
            "signing": self.held[signer].kid,
            "switch": pending,
            "keys": keys,
            "publish_lead_secs": self.settings.publish_lead_secs,
        })
    }

    /// Every kid held, with its algorithm.
    pub fn kids(&self) -> Vec<(String, Alg)> {
        self.held.iter().map(|h| (h.kid.clone(), h.alg)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::key::PrivateKey;
    use crate::signing::minting::Jti;
    use crate::signing::verification::decode_parts;

    const LEAD: u64 = 600;
    const RETIRE: u64 = 360;
    const T0: u64 = 1_800_000_000_000;
    const LEAD_MS: u64 = LEAD * 1000;
    const RETIRE_MS: u64 = RETIRE * 1000;

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
        let t1 = T0 + 10_000;
        let ring = ring
            .reload(&set(&[("k1", &k1), ("k2", &k2)], "k1", &[]), t1)
            .unwrap();
        assert_eq!(jwks_kids(&ring), ["k2"]);
        assert_eq!(kid_of_token(&ring, t1), "k1");

        // signing: k2 only 5 s later: k1 signs until k2 has been published for the lead.
        let t2 = t1 + 5_000;
        let ring = ring
            .reload(&set(&[("k1", &k1), ("k2", &k2)], "k2", &[]), t2)
            .unwrap();
        assert_eq!(kid_of_token(&ring, t2), "k1");
        assert_eq!(kid_of_token(&ring, t1 + LEAD_MS - 1), "k1");
        assert_eq!(kid_of_token(&ring, t1 + LEAD_MS), "k2");
        let d = ring.describe(t2);
        assert_eq!(d["signing"], "k1");
        assert_eq!(
            d["switch"],
            json!({"kid": "k2", "signs_from_ms": t1 + LEAD_MS})
        );

        // k1 removed before the switch: it keeps signing until then, and stays held until its
        // last token expired.
        let t3 = t2 + 1_000;
        let ring = ring.reload(&set(&[("k2", &k2)], "k2", &[]), t3).unwrap();
        assert_eq!(kid_of_token(&ring, t3), "k1");
        assert_eq!(kid_of_token(&ring, t1 + LEAD_MS), "k2");
        assert!(ring.prune(t1 + LEAD_MS + RETIRE_MS - 1).is_none());
        let ring = ring.prune(t1 + LEAD_MS + RETIRE_MS).expect("k1 dropped");
        assert_eq!(ring.kids(), [("k2".to_string(), Alg::EdDsa)]);
    }

    #[test]
    fn a_key_already_published_long_enough_signs_at_once() {
        let k1 = PrivateKey::generate(Alg::EdDsa);
        let k2 = PrivateKey::generate(Alg::Es256);
        let ring = start(&[("k1", &k1), ("k2", &k2)], "k1");
        let t = T0 + LEAD_MS;
        let ring = ring
            .reload(&set(&[("k1", &k1), ("k2", &k2)], "k2", &[]), t)
            .unwrap();
        assert_eq!(kid_of_token(&ring, t), "k2");
        // k1 signed until t: removed now, it stays for the retire window.
        let ring = ring
            .reload(&set(&[("k2", &k2)], "k2", &[]), t + 1_000)
            .unwrap();
        assert_eq!(jwks_kids(&ring), ["k2", "k1"]);
        assert!(ring.prune(t + RETIRE_MS - 1).is_none());
        assert_eq!(jwks_kids(&ring.prune(t + RETIRE_MS).unwrap()), ["k2"]);
    }

    #[test]
    fn a_key_that_never_signed_goes_at_once_and_revoked_keys_go_at_once() {
        let k1 = PrivateKey::generate(Alg::EdDsa);
        let k2 = PrivateKey::generate(Alg::EdDsa);
        let ring = start(&[("k1", &k1), ("k2", &k2)], "k1");
        let ring = ring
            .reload(&set(&[("k1", &k1)], "k1", &[]), T0 + 1_000)
            .unwrap();
        assert_eq!(jwks_kids(&ring), ["k1"], "k2 never signed");
        // Revoking the signing key: the new key signs at once, lead or not.
        let ring = ring
            .reload(&set(&[("k1", &k1), ("k2", &k2)], "k1", &[]), T0 + 2_000)
            .unwrap();
        let ring = ring
            .reload(&set(&[("k2", &k2)], "k2", &["k1"]), T0 + 3_000)
            .unwrap();
        assert_eq!(kid_of_token(&ring, T0 + 3_000), "k2");
        assert_eq!(jwks_kids(&ring), ["k2"]);
    }

    #[test]
    fn a_held_kid_cannot_change_its_material() {
        let k1 = PrivateKey::generate(Alg::EdDsa);
        let other = PrivateKey::generate(Alg::EdDsa);
        let ring = start(&[("k1", &k1)], "k1");
        let e = ring
            .reload(&set(&[("k1", &other)], "k1", &[]), T0 + 1_000)
            .unwrap_err();
        assert!(e.contains("other key material"), "{e}");
    }

    #[test]
    fn the_jwks_etag_follows_its_contents() {
        let k1 = PrivateKey::generate(Alg::EdDsa);
        let k2 = PrivateKey::generate(Alg::Es256);
        let a = start(&[("k1", &k1)], "k1");
        let b = a
            .reload(&set(&[("k1", &k1)], "k1", &[]), T0 + 1_000)
            .unwrap();
        assert_eq!(a.jwks(), b.jwks());
        let c = b
            .reload(&set(&[("k1", &k1), ("k2", &k2)], "k1", &[]), T0 + 2_000)
            .unwrap();
        assert_ne!(c.jwks().etag, a.jwks().etag);
        let v: Value = serde_json::from_str(&c.jwks().body).unwrap();
        assert_eq!(v["keys"][1]["kty"], "EC");
        assert_eq!(v["keys"][1]["alg"], "ES256");
        assert_eq!(v["keys"][1]["use"], "sig");
        assert_eq!(v["keys"][0]["crv"], "Ed25519");
        assert!(v["keys"][0].get("d").is_none(), "never the private part");
    }

    /// The state as a new process reads it back from its file.
    fn through_file(ring: &KeyRing) -> Value {
        serde_json::from_str(&ring.state().to_string()).unwrap()
    }

    #[test]
    fn a_process_taking_over_keeps_publish_times_pending_switches_and_retiring_keys() {
        let k1 = PrivateKey::generate(Alg::EdDsa);
        let k2 = PrivateKey::generate(Alg::Es256);
        let both = |signing| set(&[("k1", &k1), ("k2", &k2)], signing, &[]);
        let a = start(&[("k1", &k1)], "k1");
        let a = a.reload(&both("k1"), T0 + 1_000).unwrap();
        let a = a.reload(&both("k2"), T0 + 2_000).unwrap();
        let switch = T0 + 1_000 + LEAD_MS;
        let state = through_file(&a);
        assert!(
            !state.to_string().contains("\"d\""),
            "no private key in the state"
        );

        // An upgrade 1 s later: k1 still signs until the same switch, k2 keeps its publish time.
        let b = KeyRing::resume(
            &state,
            &both("k2"),
            settings(),
            &Default::default(),
            T0 + 3_000,
        )
        .unwrap();
        assert_eq!(kid_of_token(&b, T0 + 3_000), "k1");
        assert_eq!(kid_of_token(&b, switch - 1), "k1");
        assert_eq!(kid_of_token(&b, switch), "k2");
        assert_eq!(b.describe(T0 + 3_000)["switch"]["signs_from_ms"], switch);

        // After the switch k1 is removed; another upgrade; k1 stays published (its public key
        // from the state) until its tokens expired, though no process has its file any more.
        let b = b
            .reload(&set(&[("k2", &k2)], "k2", &[]), switch + 5_000)
            .unwrap();
        let c = KeyRing::resume(
            &through_file(&b),
            &set(&[("k2", &k2)], "k2", &[]),
            settings(),
            &Default::default(),
            switch + 6_000,
        )
        .unwrap();
        assert_eq!(jwks_kids(&c), ["k2", "k1"]);
        assert_eq!(kid_of_token(&c, switch + 6_000), "k2");
        assert!(c.prune(switch + RETIRE_MS - 1).is_none());
        assert_eq!(jwks_kids(&c.prune(switch + RETIRE_MS).unwrap()), ["k2"]);
    }

    #[test]
    fn a_takeover_refuses_a_kid_whose_material_changed() {
        let k1 = PrivateKey::generate(Alg::EdDsa);
        let other = PrivateKey::generate(Alg::EdDsa);
        let a = start(&[("k1", &k1)], "k1");
        let e = KeyRing::resume(
            &through_file(&a),
            &set(&[("k1", &other)], "k1", &[]),
            settings(),
            &Default::default(),
            T0 + 1_000,
        )
        .unwrap_err();
        assert!(e.contains("other key material"), "{e}");
        // A state this version cannot read is refused, not taken for a first start.
        for bad in [json!({"version": 99}), json!({"version": 1}), json!([1])] {
            let e = KeyRing::resume(
                &bad,
                &set(&[("k1", &other)], "k1", &[]),
                settings(),
                &Default::default(),
                T0,
            );
            assert!(e.is_err(), "{bad}");
        }
    }

    #[test]
    fn a_signing_key_gone_from_the_file_before_a_takeover_cannot_sign_there() {
        // k1 signs while k2 waits for the lead; k1 leaves the file and the process is replaced
        // before the switch: the new process has no k1 key, so k2 signs (the one case where the
        // lead is cut short; the README says to remove a key only after the switch).
        let k1 = PrivateKey::generate(Alg::EdDsa);
        let k2 = PrivateKey::generate(Alg::EdDsa);
        let both = set(&[("k1", &k1), ("k2", &k2)], "k2", &[]);
        let a = start(&[("k1", &k1), ("k2", &k2)], "k1")
            .reload(&both, T0 + 1_000)
            .unwrap();
        assert_eq!(kid_of_token(&a, T0 + 2_000), "k1", "k2 waits for the lead");
        let b = KeyRing::resume(
            &through_file(&a),
            &set(&[("k2", &k2)], "k2", &[]),
            settings(),
            &Default::default(),
            T0 + 2_000,
        )
        .unwrap();
        assert_eq!(kid_of_token(&b, T0 + 2_000), "k2");
        // k1 may have signed until the takeover: published until its tokens expired.
        assert_eq!(jwks_kids(&b), ["k2", "k1"]);
        assert!(b.prune(T0 + 2_000 + RETIRE_MS - 1).is_none());
        assert!(b.prune(T0 + 2_000 + RETIRE_MS).is_some());
    }

    #[test]
    fn a_state_publishes_public_members_only_and_survives_hostile_numbers() {
        let k1 = PrivateKey::generate(Alg::EdDsa);
        let k2 = PrivateKey::generate(Alg::EdDsa);
        let a = start(&[("k1", &k1)], "k1");
        let mut state = through_file(&a);
        // A hostile state: a private member in the JWK of a key the new file no longer has
        // (so it is published from the state alone while it retires), and a time at the limit.
        state["keys"][0]["jwk"]["d"] = "c2VjcmV0".into();
        state["keys"][0]["signed_until"] = u64::MAX.into();
        let b = KeyRing::resume(
            &state,
            &set(&[("k2", &k2)], "k2", &[]),
            settings(),
            &Default::default(),
            T0 + 1_000,
        )
        .unwrap();
        assert_eq!(jwks_kids(&b), ["k2", "k1"]);
        assert!(!b.jwks().body.contains("\"d\""), "{}", b.jwks().body);
        assert_eq!(kid_of_token(&b, T0 + 1_000), "k2");
        // A JWK that is not an Ed25519/P-256 public key of its kid is not published.
        let mut bad = through_file(&a);
        bad["keys"][0]["jwk"]["kty"] = "oct".into();
        let c = KeyRing::resume(
            &bad,
            &set(&[("k2", &k2)], "k2", &[]),
            settings(),
            &Default::default(),
            T0 + 1_000,
        )
        .unwrap();
        assert_eq!(jwks_kids(&c), ["k2"]);
        // A made-up retiring key: published only if its JWK is the key its fingerprint names,
        // and never for longer than a retire window from now.
        let kz = PrivateKey::generate(Alg::EdDsa);
        for (fingerprint, published) in [
            ("0000000000000000".to_string(), false),
            (kz.fingerprint(), true),
        ] {
            let mut forged = through_file(&a);
            forged["keys"].as_array_mut().unwrap().push(json!({
                "kid": "kz", "alg": "EdDSA", "fingerprint": fingerprint,
                "jwk": kz.public_jwk("kz"), "published_at": T0, "signed_until": T0,
                "drop_at": u64::MAX,
            }));
            let now = T0 + 1_000;
            let d = KeyRing::resume(
                &forged,
                &set(&[("k1", &k1)], "k1", &[]),
                settings(),
                &Default::default(),
                now,
            )
            .unwrap();
            assert_eq!(jwks_kids(&d).contains(&"kz".to_string()), published);
            if published {
                assert!(d.prune(now + RETIRE_MS - 1).is_none());
                assert_eq!(jwks_kids(&d.prune(now + RETIRE_MS).unwrap()), ["k1"]);
            }
        }
    }
}
