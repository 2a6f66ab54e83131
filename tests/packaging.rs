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
    let readme = read("README.md");
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
            "README's table lacks {k}"
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
    assert_eq!(demo.trim_end(), jwt_proxy::token::DEMO_SECRET);
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
