//! The one clock helper: wall-clock time in Unix milliseconds, for records, tokens and the keys'
//! rotation rules (which take it as an argument, so their tests need no clock).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}
