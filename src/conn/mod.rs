pub mod connection_cap;
pub mod drain;
pub mod header_timeout;
pub mod listener;
pub mod shutdown;
