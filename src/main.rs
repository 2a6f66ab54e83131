//! jwt-proxy: wiring only. Parse the command line and the config, build the proxy and status
//! services, run. Each step is a function below; none decides anything a module should.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use pingora::apps::HttpServerOptions;
use pingora::prelude::Opt;
use pingora::proxy::HttpProxy;
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use jwt_proxy::cli::{self, Early};
use jwt_proxy::config::{Config, ConfigError};
use jwt_proxy::conn::connection_cap::{Capped, MAX_STATUS_CONNECTIONS};
use jwt_proxy::conn::drain::ProxyApp;
use jwt_proxy::conn::shutdown::DelayedStop;
use jwt_proxy::http::proxy::JwtProxy;
use jwt_proxy::http::upstream::{Refresher, Upstream};
use jwt_proxy::observe::access_log::AccessLog;
use jwt_proxy::observe::stats::Stats;
use jwt_proxy::observe::status::{Info, StatusApp};
use jwt_proxy::signing::live::LiveKeys;
use jwt_proxy::signing::state;
use jwt_proxy::signing::watcher::KeyWatcher;

// glibc malloc showed up at ~13% of the proxy's CPU in profiles; mimalloc is cheaper per call.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status of a configuration that does not load (the supervisor does not retry it).
const CONFIG_REFUSED: u8 = 2;

fn main() -> ExitCode {
    // SIGHUP reloads the keyset (the key watcher's handler); until that handler is installed,
    // a HUP must not take the default action, which ends the process.
    // SAFETY: setting a signal's disposition to SIG_IGN, before any thread exists.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let (args, print_paths) = match cli::early_args(std::env::args_os()) {
        Early::Version => {
            println!("{}", cli::version_line());
            return ExitCode::SUCCESS;
        }
        Early::Keys(args) => return ExitCode::from(jwt_proxy::tools::key_tool::run(args)),
        Early::Run { args, print_paths } => (args, print_paths),
    };
    let mut opt = Opt::parse_from_args(args);
    let config = match Config::load(opt.conf.as_deref().map(Path::new), &|k| {
        std::env::var(k).ok()
    }) {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    if print_paths {
        print!("{}", cli::print_paths_text(&config));
        return ExitCode::SUCCESS;
    }
    let upstream_addr = match prepare(&config, &opt) {
        Ok(a) => a,
        Err(e) => return refused(e),
    };
    let stats = Arc::new(Stats::new(config.status_recent, config.status_recent_bytes));
    let keys = match live_keys(&config, &stats) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("jwt-proxy: config error: JWT_KEYS: {e}");
            return ExitCode::from(CONFIG_REFUSED);
        }
    };
    if opt.test {
        for w in config.warnings() {
            eprintln!("jwt-proxy: warning: {w}");
        }
        println!("jwt-proxy: configuration OK");
        return ExitCode::SUCCESS;
    }
    log_start(&config, upstream_addr);
    opt.conf = None; // already read; Pingora would only warn about it
    match run(config, opt, upstream_addr, stats, keys) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jwt-proxy: {e}");
            ExitCode::from(CONFIG_REFUSED)
        }
    }
}

fn refused(e: ConfigError) -> ExitCode {
    eprintln!("jwt-proxy: {e}");
    ExitCode::from(CONFIG_REFUSED)
}

/// The I/O checks before anything starts: the upstream's address, the private runtime
/// directory, and (at a fresh start) both listen addresses.
fn prepare(config: &Config, opt: &Opt) -> Result<SocketAddr, ConfigError> {
    let upstream_addr = config.upstream.resolve()?;
    config.prepare_runtime_dirs()?;
    if !opt.test && !opt.upgrade {
        config.check_listen_addresses()?;
    }
    Ok(upstream_addr)
}

/// The keys requests are signed with, resuming a previous process's keyset state if any.
fn live_keys(config: &Config, stats: &Arc<Stats>) -> Result<Arc<LiveKeys>, String> {
    let state_path = config
        .keys
        .path
        .as_ref()
        .map(|k| state::state_path(Path::new(&config.server.pid_file), k));
    LiveKeys::new(&config.keys, &config.token, state_path, stats.clone())
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// What the operator sees at start: where it listens and sends, which key signs, warnings.
fn log_start(config: &Config, upstream_addr: SocketAddr) {
    log::info!(
        "jwt-proxy {} listening on {} (status on {}), upstream {} ({upstream_addr}), user from {}",
        env!("CARGO_PKG_VERSION"),
        config.listen,
        config.status_listen,
        config.upstream.shown_url(),
        config.user_source
    );
    let keys = &config.keys;
    match &keys.path {
        None => log::info!(
            "signing key fingerprint {} ({}-encoded){}",
            keys.signing_key().fingerprint(),
            keys.encoding.as_str(),
            Some(keys.set.signing.as_str())
                .filter(|k| !k.is_empty())
                .map(|k| format!(", kid {k}"))
                .unwrap_or_default()
        ),
        Some(path) => log::info!(
            "keyset {}: signing {} ({} {}), {} keys; publish lead {} s, JWKS max-age {} s",
            path.display(),
            keys.set.signing,
            keys.signing_key().alg(),
            keys.signing_key().fingerprint(),
            keys.set.keys.len(),
            keys.rotation.publish_lead_secs,
            keys.jwks_max_age_secs
        ),
    }
    for w in config.warnings() {
        log::warn!("{w}");
    }
}

/// Build the services and run until stopped.
fn run(
    config: Config,
    opt: Opt,
    upstream_addr: SocketAddr,
    stats: Arc<Stats>,
    keys: Arc<LiveKeys>,
) -> pingora::Result<()> {
    let upstream = Arc::new(Upstream::new(&config, upstream_addr, stats.clone()));
    let access_log = config
        .access_log
        .then(|| AccessLog::new(stats.clone(), Box::new(std::io::stdout())));
    keys.save_state();
    let proxy = JwtProxy::new(
        &config,
        upstream.clone(),
        keys.clone(),
        stats.clone(),
        access_log.clone(),
    )?;
    let info = status_info(&config, &upstream, &keys);
    let shutdown = DelayedStop {
        delay: config.shutdown_delay,
        stats: stats.clone(),
    };
    let mut server = Server::new_with_opt_and_conf(opt, config.server);
    server.bootstrap();
    write_pid_file(&server);
    let mut http_proxy = HttpProxy::new(proxy, server.configuration.clone());
    http_proxy.handle_init_modules();
    // CONNECT reaches our phases so that it gets our JSON 405 (it is never proxied).
    let mut options = HttpServerOptions::default();
    options.allow_connect_method_proxying = true;
    http_proxy.server_options = Some(options);
    let app = ProxyApp::new(
        http_proxy,
        config.client_header_timeout,
        config.drain_idle,
        Duration::from_secs(config.client_keepalive_secs),
        stats.clone(),
        access_log,
    );
    let mut proxy_service = Service::new("jwt-proxy".to_string(), app);
    proxy_service.add_listener(jwt_proxy::conn::listener::proxy_listener(
        &config.listen.to_string(),
    ));
    let status_app = Capped::new(StatusApp { stats, info }, MAX_STATUS_CONNECTIONS);
    let mut status_service = Service::new("status".to_string(), status_app);
    status_service.add_tcp(&config.status_listen.to_string());
    status_service.threads = Some(1);
    server.add_service(proxy_service);
    server.add_service(status_service);
    server.add_service(background_service("upstream resolver", Refresher(upstream)));
    server.add_service(background_service("key watcher", KeyWatcher(keys)));
    server.run(RunArgs {
        shutdown_signal: Box::new(shutdown),
    });
    Ok(())
}

/// What the status service shows about this process.
fn status_info(config: &Config, upstream: &Arc<Upstream>, keys: &Arc<LiveKeys>) -> Info {
    Info {
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        worker_threads: config.server.threads,
        listen: config.listen,
        upstream_url: config.upstream.shown_url(),
        upstream: upstream.clone(),
        connect_timeout: config.connect_timeout,
        status_token: config.status_token.clone(),
        demo_key: config.keys.is_demo(),
        keys: keys.clone(),
        keyset_path: config.keys.path.as_ref().map(|p| p.display().to_string()),
        user_source: config.user_source.to_string(),
    }
}

/// Pingora writes the pid file only when daemonizing; in the foreground we write it once the
/// listeners are ours (after an upgrade's hand-over), so reload tooling can find this process.
fn write_pid_file(server: &Server) {
    if server.configuration.daemon {
        return;
    }
    if let Err(e) = std::fs::write(
        &server.configuration.pid_file,
        format!("{}\n", std::process::id()),
    ) {
        log::warn!(
            "cannot write pid file {}: {e}",
            server.configuration.pid_file
        );
    }
}
