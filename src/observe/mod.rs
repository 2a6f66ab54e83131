pub mod access_log;
pub mod decisions;
pub mod record;
pub mod redact;
pub mod stats;
pub mod status;
pub mod status_page;
pub mod timeline;
