//! The I/O stage after a configuration is built: the private runtime directory of `pid_file` and
//! `upgrade_sock`, and the listen addresses checked at a fresh start.

use std::path::Path;
use std::time::Duration;

use super::error::{err, key_err, ConfigError};
use super::settings::Setting;
use super::Config;
use crate::os::{effective_uid, private_dir};

impl Config {
    /// At a fresh start (not an upgrade, whose listeners are handed over): both addresses can
    /// be listened on. Pingora would otherwise retry, then panic in the status service and run
    /// on without it.
    pub fn check_listen_addresses(&self) -> Result<(), ConfigError> {
        for (setting, addr) in [
            (Setting::HttpPort, self.listen),
            (Setting::StatusPort, self.status_listen),
        ] {
            // Like Pingora's own bind, wait a while for a port still held (by a process that is
            // stopping, when the supervisor restarts a crashed one).
            let until = std::time::Instant::now() + Duration::from_secs(15);
            loop {
                match std::net::TcpListener::bind(addr) {
                    Ok(_) => break,
                    Err(e)
                        if e.kind() == std::io::ErrorKind::AddrInUse
                            && std::time::Instant::now() < until =>
                    {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    Err(e) => return Err(err(setting, format!("cannot listen on {addr}: {e}"))),
                }
            }
        }
        Ok(())
    }

    /// Make sure the directories of `pid_file` and `upgrade_sock` are ours alone: create a
    /// missing one with mode 0700; refuse one owned by another user, group- or world-writable,
    /// or a symbolic link (anyone who can write there can replace the upgrade socket and take
    /// over the listening sockets at the next upgrade).
    pub fn prepare_runtime_dirs(&self) -> Result<(), ConfigError> {
        let uid = effective_uid().map_err(|p| key_err("pid_file", p))?;
        for (key, path) in [
            ("pid_file", &self.server.pid_file),
            ("upgrade_sock", &self.server.upgrade_sock),
        ] {
            let dir = match Path::new(path).parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            private_dir(dir, uid).map_err(|p| key_err(key, p))?;
        }
        Ok(())
    }
}
