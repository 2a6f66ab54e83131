pub mod client;
pub mod echo;
pub mod jwks_client;
pub mod key_tool;
