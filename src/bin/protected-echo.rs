//! protected-echo: the demo/test upstream (see `jwt_proxy::tools::echo`).

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;

use std::sync::Arc;

use jwt_proxy::signing::key::Key;
use jwt_proxy::tools::echo::EchoApp;
use jwt_proxy::tools::jwks_client::JwksVerifier;
use jwt_proxy::tools::key_tool::key_from_args;

/// A small upstream for jwt-proxy: answers POST /protected with a JSON echo of the request.
#[derive(Parser, Debug)]
#[command(name = "protected-echo", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "ECHO_LISTEN", default_value = "127.0.0.1:9000")]
    listen: String,
    /// Key that x-my-jwt tokens are verified with (default: the demo key).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Read the key from this file instead (text: one trailing newline ignored; hex and
    /// base64: surrounding whitespace ignored; an empty file is an error).
    #[arg(long, env = "JWT_SECRET_FILE")]
    secret_file: Option<String>,
    /// How the key is encoded: text, hex or base64.
    #[arg(long, env = "JWT_SECRET_ENCODING", default_value = "text")]
    secret_encoding: String,
    /// Verify tokens by their kid against the JWKS at this URL (e.g.
    /// http://127.0.0.1:8081/.well-known/jwks.json); fetched at start and again for an unknown
    /// kid, at most once a second. With --secret/--secret-file too, HS512 tokens use the secret.
    #[arg(long, env = "JWKS_URL")]
    jwks: Option<String>,
    /// Do not verify tokens, only echo them.
    #[arg(long)]
    no_verify: bool,
    /// Count distinct and duplicate values of this request header (shown by `GET /stats`).
    #[arg(long)]
    track_header: Option<String>,
    /// Count distinct and duplicate `jti`s of the x-my-jwt tokens received (`GET /stats`).
    #[arg(long)]
    track_jti: bool,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// After a start-up error, wait this long before exiting, so that a container restart
    /// policy without back-off does not restart it in a tight loop (the image sets 10).
    #[arg(long, env = "START_ERROR_PAUSE_SECS", default_value_t = 0)]
    start_error_pause_secs: u64,
}

/// A start-up error: said, then (after the pause) exit status 2.
fn refuse(args: &Args, message: &str) -> ExitCode {
    eprintln!("protected-echo: {message}");
    std::thread::sleep(std::time::Duration::from_secs(args.start_error_pause_secs));
    ExitCode::from(2)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let verifier = if args.no_verify {
        None
    } else {
        let secret = match key_from_args(
            args.secret.as_deref(),
            args.secret_file.as_deref().map(Path::new),
            &args.secret_encoding,
        ) {
            // Without a JWKS and a secret, the demo key (what `make run` signs with).
            Ok(key) if args.jwks.is_none() => Some(key.unwrap_or_else(Key::demo)),
            Ok(key) => key,
            Err(e) => return refuse(&args, &e.to_string()),
        };
        let (v, problem) = JwksVerifier::new(secret, args.jwks.clone());
        if let Some(p) = problem {
            eprintln!("protected-echo: {p} (tried again at the first token)");
        }
        Some(Arc::new(v))
    };
    let track = match args
        .track_header
        .as_deref()
        .map(|h| http::HeaderName::from_bytes(h.as_bytes()))
    {
        None => None,
        Some(Ok(h)) => Some(h),
        Some(Err(_)) => return refuse(&args, "--track-header is not a valid header name"),
    };
    let conf = ServerConf {
        threads: args.threads.max(1),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: format!("/tmp/protected-echo-{}.sock", std::process::id()),
        pid_file: format!("/tmp/protected-echo-{}.pid", std::process::id()),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = Service::new(
        "protected-echo".to_string(),
        EchoApp::new(verifier, track, args.track_jti),
    );
    service.add_tcp(&args.listen);
    server.add_service(service);
    eprintln!("protected-echo listening on {}", args.listen);
    server.run_forever()
}
