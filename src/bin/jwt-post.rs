//! jwt-post: POST JSON through jwt-proxy and show the response and its token.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use jwt_proxy::tools::client::{describe, exit, load_data, parse_header};
use jwt_proxy::tools::jwks_client::JwksVerifier;
use jwt_proxy::tools::key_tool::key_from_args;
use jwt_proxy::TOKEN_HEADER;

/// POST JSON to jwt-proxy; print the status, the response headers and the x-my-jwt token decoded.
#[derive(Parser, Debug)]
#[command(name = "jwt-post", version)]
struct Args {
    /// Where to POST.
    #[arg(default_value = "http://localhost:8080/")]
    url: String,
    /// Send this user in the user header.
    #[arg(long)]
    user: Option<String>,
    /// Header the user goes in.
    #[arg(long, default_value = "x-user")]
    user_header: String,
    /// JSON body, or @FILE to read it from a file.
    #[arg(long, default_value = "{}")]
    data: String,
    /// Send `Authorization: Bearer TOKEN`.
    #[arg(long)]
    bearer: Option<String>,
    /// Extra header, NAME:VALUE (repeatable).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Write the received x-my-jwt to this file.
    #[arg(long)]
    save: Option<String>,
    /// Verify the token with this key.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Read the key from this file instead (text: one trailing newline ignored; hex and
    /// base64: surrounding whitespace ignored; an empty file is an error).
    #[arg(long, env = "JWT_SECRET_FILE")]
    secret_file: Option<String>,
    /// How the key is encoded: text, hex, base64.
    #[arg(long, env = "JWT_SECRET_ENCODING", default_value = "text")]
    secret_encoding: String,
    /// Verify the token by its kid against the JWKS at this URL (e.g.
    /// http://127.0.0.1:8081/.well-known/jwks.json).
    #[arg(long, env = "JWKS_URL")]
    jwks: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Print only the token.
    #[arg(long, short)]
    quiet: bool,
    /// Health probe: GET the URL and exit 0 on a 2xx, 1 otherwise; print nothing. For container
    /// health checks (the runtime image has no curl).
    #[arg(long)]
    probe: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) | Err(code) => ExitCode::from(code),
    }
}

fn fail(code: u8, msg: impl std::fmt::Display) -> u8 {
    eprintln!("jwt-post: {msg}");
    code
}

fn probe(args: &Args) -> u8 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(args.timeout)))
        .build()
        .into();
    match agent.get(&args.url).call() {
        Ok(r) if r.status().is_success() => exit::OK,
        _ => exit::REQUEST_FAILED,
    }
}

fn run(args: &Args) -> Result<u8, u8> {
    if args.probe {
        return Ok(probe(args));
    }
    let key = key_from_args(
        args.secret.as_deref(),
        args.secret_file.as_deref().map(Path::new),
        &args.secret_encoding,
    )
    .map_err(|e| fail(exit::USAGE, e))?;
    let body = load_data(&args.data).map_err(|e| fail(exit::USAGE, e))?;
    let mut headers = Vec::new();
    for h in &args.headers {
        headers.push(parse_header(h).map_err(|e| fail(exit::USAGE, e))?);
    }
    if let Some(user) = &args.user {
        headers.push((args.user_header.clone(), user.clone()));
    }
    if let Some(token) = &args.bearer {
        headers.push(("authorization".into(), format!("Bearer {token}")));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(args.timeout)))
        .build()
        .into();
    let mut req = agent
        .post(&args.url)
        .header("content-type", "application/json");
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    let mut resp = req.send(&body[..]).map_err(|e| {
        fail(
            exit::REQUEST_FAILED,
            format!("request to {} failed: {e}", args.url),
        )
    })?;
    let status = resp.status();
    let token = resp
        .headers()
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut text = String::new();
    let _ = resp.body_mut().as_reader().read_to_string(&mut text);
    if args.quiet {
        if let Some(t) = &token {
            println!("{t}");
        }
    } else {
        println!("{:?} {}", resp.version(), status);
        for (k, v) in resp.headers() {
            println!("{k}: {}", String::from_utf8_lossy(v.as_bytes()));
        }
        println!();
        if let Some(t) = &token {
            println!("{}", describe(t));
        }
        println!("body:\n{text}");
    }
    if !status.is_success() {
        return Err(fail(exit::REQUEST_FAILED, format!("status {status}")));
    }
    let Some(token) = token else {
        return Err(fail(exit::NO_TOKEN, "the response carried no x-my-jwt"));
    };
    if let Some(path) = &args.save {
        std::fs::write(path, format!("{token}\n"))
            .map_err(|e| fail(exit::REQUEST_FAILED, format!("cannot write {path}: {e}")))?;
    }
    if key.is_some() || args.jwks.is_some() {
        let (verifier, _) = JwksVerifier::new(key, args.jwks.clone());
        match verifier.verify(&token) {
            Ok(_) if args.quiet => {}
            Ok(_) => println!(
                "token verified: signature valid with the given {}",
                if args.jwks.is_some() { "JWKS" } else { "key" }
            ),
            Err(e) => {
                return Err(fail(
                    exit::INVALID_TOKEN,
                    format!("token did not verify: {e}"),
                ))
            }
        }
    }
    Ok(exit::OK)
}
