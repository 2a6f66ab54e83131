pub mod key;
pub mod keyset;
pub mod live;
pub mod minting;
pub mod ring;
pub mod verification;
