//! Pingora's own server settings (the YAML file's top level) merged over our defaults for them.

use pingora::server::configuration::ServerConf;

use super::error::{key_err, ConfigError};
use super::layers::{did_you_mean, yaml_key_text};
use crate::os::default_runtime_dir;

/// Pingora server settings we default differently from Pingora (its grace period is 300 s and
/// it runs one thread per service). The YAML file's top-level keys override these. `pid_file`
/// and `upgrade_sock` default to a private per-user directory (`default_runtime_dir`);
/// `threads` to the CPUs the process may use (`default_threads`), and `work_stealing` to on only
/// when there are several: one worker runs tokio's single-threaded scheduler, which costs 10-15%
/// less CPU per request in `make compare` than the stealing one with one worker. Several workers
/// keep stealing: without it, a worker taking a pooled upstream connection released by another
/// races that worker's idle watch (Pingora logs "failed to acquire reusable stream" and opens a
/// new connection, for about 0.1% of requests in a 2-thread wrk run).
const SERVER_DEFAULTS: &str = "
version: 1
grace_period_seconds: 35
graceful_shutdown_timeout_seconds: 5
";

/// Pingora's server settings, as its `ServerConf` reads them: every other top-level key (but
/// `jwt_proxy`) is a typo, which Pingora itself would ignore.
pub(super) fn server_keys() -> Vec<String> {
    match serde_yaml::to_value(ServerConf::default()) {
        Ok(serde_yaml::Value::Mapping(m)) => m
            .keys()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn server_conf(top: serde_yaml::Mapping) -> Result<ServerConf, ConfigError> {
    let known = server_keys();
    for k in top.keys() {
        let name = yaml_key_text(k);
        if !known.contains(&name) {
            return Err(key_err(
                name.clone(),
                format!(
                    "unknown setting{}; the top level holds Pingora's server settings, ours go \
                     under jwt_proxy:",
                    did_you_mean(&name, known.iter().map(String::as_str))
                ),
            ));
        }
    }
    let serde_yaml::Value::Mapping(mut merged) = serde_yaml::from_str(SERVER_DEFAULTS)
        .map_err(|e| key_err("server defaults", e.to_string()))?
    else {
        return Err(key_err("server defaults", "not a mapping"));
    };
    let top_has_work_stealing = top.contains_key("work_stealing");
    if !top.contains_key("threads") {
        merged.insert("threads".into(), default_threads().into());
    }
    for (key, file) in [
        ("pid_file", "jwt-proxy.pid"),
        ("upgrade_sock", "upgrade.sock"),
    ] {
        if !top.contains_key(key) {
            let dir = default_runtime_dir().map_err(|p| key_err(key, p))?;
            merged.insert(key.into(), dir.join(file).display().to_string().into());
        }
    }
    for (k, v) in top {
        merged.insert(k, v);
    }
    let conf: ServerConf = serde_yaml::from_value(serde_yaml::Value::Mapping(merged))
        .map_err(|e| key_err("server settings", e.to_string()))?;
    let mut conf = conf
        .validate()
        .map_err(|e| key_err("server settings", e.to_string()))?;
    if !top_has_work_stealing {
        conf.work_stealing = conf.threads > 1;
    }
    if conf.threads == 0 {
        return Err(key_err("threads", "must be at least 1"));
    }
    for (key, path) in [
        ("pid_file", &conf.pid_file),
        ("upgrade_sock", &conf.upgrade_sock),
    ] {
        if path.trim().is_empty() {
            return Err(key_err(key, "must be a path"));
        }
    }
    Ok(conf)
}

/// Worker threads when `threads` is not set: the CPUs this process may run on (its affinity
/// mask and cgroup CPU quota, as `std::thread::available_parallelism` reads them), so a
/// container limited to one CPU does not run two threads that take turns on it.
pub(crate) fn default_threads() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}
