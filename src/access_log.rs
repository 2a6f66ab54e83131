//! The access log: one JSON line per request on stdout, written in one `write` so lines never
//! interleave. The line itself is `Record::log_line`.

use std::io::Write;

use crate::record::Record;

pub fn write(r: &Record) {
    let mut text = r.log_line();
    text.push('\n');
    // A closed stdout must not take the proxy down; the record is still in the stats.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Called before the process exits on its own (the end of a drain): nothing is buffered today,
/// but the exit path must not depend on that.
pub fn flush() {
    let _ = std::io::stdout().lock().flush();
}
