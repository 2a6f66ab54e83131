//! What can be checked of the Docker image and compose stack without a Docker engine: lint,
//! schema, and that every binary, port and variable they name exists in the crate and README.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{assert_success, manifest_dir};

const BINARIES: [&str; 3] = ["jwt-proxy", "jwt-post", "protected-echo"];

fn read(path: &str) -> String {
    std::fs::read_to_string(manifest_dir().join(path)).unwrap()
}

fn venv_tool(name: &str) -> std::path::PathBuf {
    let bin = common::python().parent().unwrap().join(name);
    assert!(
        bin.exists(),
        "{name} missing from the test venv (run `make test`)"
    );
    bin
}

fn compose() -> serde_yaml::Value {
    serde_yaml::from_str(&read("docker-compose.yml")).unwrap()
}

/// Run a checker from the test venv on a repository file; it must exit 0.
fn check_with(tool: &str, args: &[&str], file: &str) {
    let out = Command::new(venv_tool(tool))
        .args(args)
        .arg(manifest_dir().join(file))
        .output()
        .unwrap();
    assert_success(&out, &format!("{tool} {file}"));
}

#[test]
fn hadolint_passes() {
    check_with("hadolint", &[], "Dockerfile");
}

#[test]
fn compose_file_matches_the_official_schema() {
    check_with(
        "check-jsonschema",
        &["--builtin-schema", "vendor.compose-spec"],
        "docker-compose.yml",
    );
}

#[test]
fn cargo_builds_every_binary_the_images_name() {
    let cargo: toml_like::Manifest = toml_like::parse(&read("Cargo.toml"));
    assert_eq!(cargo.bins, BTreeSet::from(BINARIES.map(String::from)));

    // Compose: entrypoints, commands and health checks start with one of our binaries.
    let c = compose();
    let mut named = BTreeSet::new();
    for (name, svc) in c["services"].as_mapping().unwrap() {
        for key in ["entrypoint", "command"] {
            if let Some(first) = svc[key].as_sequence().and_then(|s| s.first()) {
                if key == "entrypoint" || !first.as_str().unwrap().starts_with('-') {
                    named.insert(first.as_str().unwrap().to_string());
                }
            }
        }
        let test = svc["healthcheck"]["test"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name:?} has a health check"));
        assert_eq!(test[0], "CMD");
        named.insert(test[1].as_str().unwrap().to_string());
    }
    // Dockerfile: what is copied out of target/release, the entrypoint and the health check.
    let dockerfile = read("Dockerfile");
    for line in dockerfile.lines().filter(|l| l.contains(" cp ")) {
        for word in line.split_whitespace() {
            if let Some(bin) = word.strip_prefix("target/release/") {
                named.insert(bin.to_string());
            }
        }
    }
    // The entrypoint is our supervisor script, which runs the binary named in JWT_PROXY_BIN.
    assert!(dockerfile.contains("COPY scripts/supervise.sh /usr/local/bin/jwt-proxy-supervise"));
    assert!(dockerfile.contains("ENTRYPOINT [\"jwt-proxy-supervise\"]"));
    assert!(dockerfile.contains("JWT_PROXY_BIN=jwt-proxy "));
    named.insert("jwt-proxy".to_string());
    assert!(manifest_dir().join("scripts/supervise.sh").exists());
    assert!(dockerfile.contains("CMD [\"jwt-post\", \"--probe\""));
    for n in &named {
        assert!(
            BINARIES.contains(&n.as_str()),
            "{n} is not a binary the crate builds"
        );
    }
    assert_eq!(named.len(), 3, "{named:?}");

    // The flags they pass exist.
    let help = |bin: &str| {
        let path = match bin {
            "jwt-post" => env!("CARGO_BIN_EXE_jwt-post"),
            _ => env!("CARGO_BIN_EXE_protected-echo"),
        };
        String::from_utf8(Command::new(path).arg("--help").output().unwrap().stdout).unwrap()
    };
    for flag in ["--probe", "--timeout"] {
        assert!(help("jwt-post").contains(flag), "jwt-post {flag}");
    }
    for flag in ["--listen", "--secret-file"] {
        assert!(
            help("protected-echo").contains(flag),
            "protected-echo {flag}"
        );
    }
}

#[test]
fn ports_and_variables_agree_with_the_config_and_readme() {
    let c = compose();
    // The configuration reference lists every setting.
    let readme = read("docs/configuration.md");
    let settings: Vec<&str> = jwt_proxy::config::SETTINGS
        .iter()
        .map(|(k, _)| *k)
        .collect();
    let default = |k: &str| {
        jwt_proxy::config::SETTINGS
            .iter()
            .find(|(n, _)| *n == k)
            .unwrap()
            .1
    };
    for k in &settings {
        assert!(
            readme.contains(&format!("`{k}`")),
            "docs/configuration.md's table lacks {k}"
        );
    }
    let proxy = &c["services"]["proxy"];
    for (k, _) in proxy["environment"].as_mapping().unwrap() {
        let k = k.as_str().unwrap();
        assert!(
            settings.contains(&k),
            "compose sets {k}, which jwt-proxy does not read"
        );
    }
    let ports: Vec<&str> = proxy["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        ports[0],
        format!("${{HTTP_PORT:-{0}}}:{0}", default("HTTP_PORT"))
    );
    assert_eq!(
        ports[1],
        format!(
            "127.0.0.1:${{STATUS_PORT:-{0}}}:{0}",
            default("STATUS_PORT")
        ),
        "status on host loopback only"
    );
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains(&format!(
        "EXPOSE {} {}",
        default("HTTP_PORT"),
        default("STATUS_PORT")
    )));
    // The upstream listens on 8080 in its container, where UPSTREAM_URL points.
    let upstream = &c["services"]["upstream"];
    assert_eq!(
        proxy["environment"]["UPSTREAM_URL"],
        "http://upstream:8080/protected"
    );
    assert!(upstream["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|a| a == "0.0.0.0:8080"));
    assert_eq!(
        proxy["depends_on"]["upstream"]["condition"],
        "service_healthy"
    );
    // The key is a secret file, not part of the image.
    assert!(!dockerfile.contains("JWT_SECRET"), "no key in the image");
    assert_eq!(
        proxy["environment"]["JWT_SECRET_FILE"],
        "/run/secrets/jwt_secret"
    );
    let demo = read("conf/demo-secret.txt");
    assert_eq!(demo.trim_end(), jwt_proxy::signing::key::DEMO_SECRET);
    assert!(read(".dockerignore").lines().any(|l| l.trim() == "target/"));
}

/// Just enough of Cargo.toml: the `[[bin]]` names.
mod toml_like {
    use std::collections::BTreeSet;
    pub struct Manifest {
        pub bins: BTreeSet<String>,
    }
    pub fn parse(text: &str) -> Manifest {
        let mut bins = BTreeSet::new();
        let mut in_bin = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if in_bin {
                if let Some(v) = line.strip_prefix("name = ") {
                    bins.insert(v.trim_matches('"').to_string());
                }
            }
        }
        Manifest { bins }
    }
}

/// `${NAME:-default}` → `default`; anything else as is.
fn compose_default(v: &str) -> String {
    match v.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        Some(inner) => inner
            .split_once(":-")
            .map(|(_, d)| d.to_string())
            .unwrap_or_default(),
        None => v.to_string(),
    }
}

#[test]
fn compose_stack_configuration_loads() {
    let c = compose();
    let proxy = &c["services"]["proxy"];
    // Compose sets only variables it has a value for: `JWT_KID: ${JWT_KID:-}` would override
    // the YAML file with nothing.
    let mut env: std::collections::BTreeMap<String, String> = Default::default();
    // The image's ENV first (Dockerfile), then compose's environment.
    let dockerfile = read("Dockerfile").replace("\\\n", " ");
    for line in dockerfile.lines().filter(|l| l.starts_with("ENV ")) {
        for pair in line[4..].split_whitespace() {
            let (k, v) = pair.split_once('=').unwrap();
            env.insert(k.into(), v.into());
        }
    }
    assert_eq!(env["STATUS_ADDR"], "0.0.0.0");
    for (name, svc) in c["services"].as_mapping().unwrap() {
        for (k, v) in svc["environment"].as_mapping().into_iter().flatten() {
            let (k, v) = (k.as_str().unwrap(), v.as_str().unwrap());
            assert!(
                !compose_default(v).trim().is_empty(),
                "{name:?} sets {k} without a value: {v:?}"
            );
        }
    }
    // Secrets: /run/secrets/NAME is the file the compose file names (its default).
    let secret_file = |path: &str| match path.strip_prefix("/run/secrets/") {
        Some(name) => {
            let file = compose_default(c["secrets"][name]["file"].as_str().unwrap());
            manifest_dir().join(file).display().to_string()
        }
        None => path.to_string(),
    };
    for (k, v) in proxy["environment"].as_mapping().unwrap() {
        let v = secret_file(&compose_default(v.as_str().unwrap()));
        env.insert(k.as_str().unwrap().into(), v);
    }
    let yaml = read("conf/jwt-proxy.yaml");
    let config = jwt_proxy::config::Config::from_yaml(&yaml, &|k| env.get(k).cloned())
        .unwrap_or_else(|e| panic!("the compose stack's configuration: {e}"));
    assert!(config.keys.is_demo(), "the demo secret file");
    let token = read("conf/demo-status-token.txt");
    assert_eq!(config.status_token.as_deref(), Some(token.trim()));
    assert!(token.trim().len() >= 16);
    // Without the token secret the image's status address is refused.
    env.remove("STATUS_TOKEN_FILE");
    let e = jwt_proxy::config::Config::from_yaml(&yaml, &|k| env.get(k).cloned()).unwrap_err();
    assert_eq!(e.setting(), "STATUS_TOKEN", "{e}");
    // Docker waits longer than the proxy's drain before it kills the container.
    let stop: u64 = proxy["stop_grace_period"]
        .as_str()
        .unwrap()
        .trim_end_matches('s')
        .parse()
        .unwrap();
    let drain = config.server.grace_period_seconds.unwrap()
        + config.server.graceful_shutdown_timeout_seconds.unwrap();
    assert!(
        stop > drain,
        "stop_grace_period {stop}s, drain up to {drain}s"
    );
}

#[test]
fn make_run_and_reload_ask_for_the_demo_key_only_as_a_default() {
    for target in ["run", "reload"] {
        let out = Command::new("make")
            .args(["-n", target])
            .current_dir(manifest_dir())
            .output()
            .unwrap();
        assert_success(&out, &format!("make -n {target}"));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("JWT_DEMO_KEY=${JWT_DEMO_KEY:-true}"),
            "{target}: {script}"
        );
    }
    // What `make run` gives jwt-proxy is a configuration that loads, with the demo key.
    let yaml = read("conf/jwt-proxy.yaml");
    let env = |k: &str| (k == "JWT_DEMO_KEY").then(|| "true".to_string());
    let config = jwt_proxy::config::Config::from_yaml(&yaml, &env).unwrap();
    assert!(config.keys.is_demo());
    // Without it, the shipped file alone has no key.
    let e = jwt_proxy::config::Config::from_yaml(&yaml, &|_| None).unwrap_err();
    assert_eq!(e.setting(), "JWT_SECRET");
}
