//! Signing keys and tokens: key material, keysets, minting, verification, the rotation rules
//! (`ring`) and the JWKS. Pure but for `live` and `watcher`, which hold the keys of a running
//! process and reload them.

pub mod jwks;
pub mod key;
pub mod keyset;
pub mod live;
pub mod minting;
pub mod ring;
pub mod state;
pub mod verification;
pub mod watcher;

use std::path::PathBuf;

use key::{KeyEncoding, PrivateKey};
use keyset::Keyset;
use ring::RotationSettings;

/// Where the signing keys come from and the rules of their rotation: what `config` builds and
/// `live` starts from.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// The keys at start-up: the `JWT_KEYS` file's set, or a one-key set (`JWT_SECRET*`, with
    /// `JWT_KID`).
    pub set: Keyset,
    /// `JWT_KEYS`: the keyset file, watched and reloaded. `None`: `JWT_SECRET*`, fixed.
    pub path: Option<PathBuf>,
    /// How `JWT_SECRET*` is encoded (for the start-up log line).
    pub encoding: KeyEncoding,
    pub rotation: RotationSettings,
    /// `Cache-Control: max-age` of the JWKS.
    pub jwks_max_age_secs: u64,
}

impl KeyConfig {
    /// The key that signs at start-up.
    pub fn signing_key(&self) -> &PrivateKey {
        let entry = self.set.get(&self.set.signing);
        &entry.unwrap_or(&self.set.keys[0]).key
    }

    pub fn is_demo(&self) -> bool {
        matches!(self.signing_key(), PrivateKey::Hs512(k) if k.is_demo())
    }
}
