//! The command line before Pingora parses it: our own flags (`--version`, `--print-paths`, the
//! `keys` tool), and the text `--print-paths` prints for the supervisor and reload scripts.

use std::ffi::OsString;

use crate::config::Config;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Early {
    /// `--version` / `-V`: print `jwt-proxy <version>` and exit 0.
    Version,
    /// `jwt-proxy keys …`: the key tool (its arguments, `keys` first).
    Keys(Vec<OsString>),
    /// Run (or `-t`), with Pingora's options; `print_paths`: `--print-paths` was given.
    Run {
        args: Vec<OsString>,
        print_paths: bool,
    },
}

/// Our own flags, which Pingora's `Opt` does not know: `--version`/`-V`, and `--print-paths`
/// (print `pid_file=`/`upgrade_sock=` once the configuration is loaded, then exit 0).
pub fn early_args(args: impl IntoIterator<Item = OsString>) -> Early {
    let args: Vec<OsString> = args.into_iter().collect();
    if args.get(1).is_some_and(|a| a == "keys") {
        return Early::Keys(args[1..].to_vec());
    }
    let mut rest = Vec::new();
    let mut print_paths = false;
    for (i, a) in args.into_iter().enumerate() {
        match a.to_str() {
            Some("--version" | "-V") if i > 0 => return Early::Version,
            Some("--print-paths") if i > 0 => print_paths = true,
            _ => rest.push(a),
        }
    }
    Early::Run {
        args: rest,
        print_paths,
    }
}

/// `jwt-proxy <version>`.
pub fn version_line() -> String {
    format!("jwt-proxy {}", env!("CARGO_PKG_VERSION"))
}

/// What `--print-paths` prints: `pid_file=…` and `upgrade_sock=…` lines for the supervisor and
/// reload scripts, then `signing_key=KID FINGERPRINT` for a fixed key (`JWT_SECRET*`; nothing for
/// a `JWT_KEYS` keyset, whose keys change while it runs): the supervisor refuses an upgrade whose
/// kid changes while its key does not (the new key was never read: a container's bind mount
/// still showing the old file, say).
pub fn print_paths_text(config: &Config) -> String {
    let mut out = paths_text(config);
    if config.keys.path.is_none() {
        let kid = Some(config.keys.set.signing.as_str()).filter(|k| !k.is_empty());
        out.push_str(&format!(
            "signing_key={} {}\n",
            kid.unwrap_or("-"),
            config.keys.signing_key().fingerprint()
        ));
    }
    out
}

/// `pid_file=…` and `upgrade_sock=…` lines.
pub(crate) fn paths_text(config: &Config) -> String {
    format!(
        "pid_file={}\nupgrade_sock={}\n",
        config.server.pid_file, config.server.upgrade_sock
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_flags_are_taken_before_pingora_sees_the_command_line() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            early_args(args(&["jwt-proxy", "--version"])),
            Early::Version
        );
        assert_eq!(
            early_args(args(&["jwt-proxy", "-c", "x", "-V"])),
            Early::Version
        );
        assert_eq!(
            early_args(args(&["jwt-proxy", "--print-paths", "-c", "x.yaml"])),
            Early::Run {
                args: args(&["jwt-proxy", "-c", "x.yaml"]),
                print_paths: true
            }
        );
        assert_eq!(
            early_args(args(&["jwt-proxy", "-t"])),
            Early::Run {
                args: args(&["jwt-proxy", "-t"]),
                print_paths: false
            }
        );
        assert_eq!(
            version_line(),
            format!("jwt-proxy {}", env!("CARGO_PKG_VERSION"))
        );
    }
}
