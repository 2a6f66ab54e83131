//! The house keeps its plan: the module graph, read from the sources' own paths (`crate::…`,
//! `super::…`, `self::…` and a parent's `use child::…`), outside `#[cfg(test)]` code, has no
//! cycle; the bottom layer (`os`, `clock`, `pingora_limits`) imports nothing of the crate; no
//! source file holds more than 600 lines of non-test code; and the shipped configuration files
//! restate no default (they show each one commented out, checked against the settings table).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path (`config::build`; the crate root is ``) → its file.
fn modules() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut out = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap().with_extension("");
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        // The binaries are not modules of the library.
        if parts[0] == "bin" || parts == ["main"] {
            continue;
        }
        let path = match parts.last().map(String::as_str) {
            Some("mod") | Some("lib") => parts[..parts.len() - 1].join("::"),
            _ => parts.join("::"),
        };
        out.insert(path, f);
    }
    out
}

/// The code of a file that is not test code: everything before its first `#[cfg(test)]`.
fn non_test(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

/// The modules a file's code names: each path resolved to the longest known module prefix.
fn imports(module: &str, code: &str, known: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let mut out = BTreeSet::new();
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.contains("::"))
        .collect();
    for w in words {
        let segs: Vec<&str> = w.split("::").filter(|s| !s.is_empty()).collect();
        let (base, rest) = match segs.first() {
            Some(&"crate") => (String::new(), &segs[1..]),
            Some(&"super") => (parent.to_string(), &segs[1..]),
            Some(&"self") => (module.to_string(), &segs[1..]),
            // A parent naming its own child module (`use build::Raw` in `config`).
            Some(first) if known.contains_key(&join(module, first)) => {
                (module.to_string(), &segs[..])
            }
            _ => continue,
        };
        let mut target = base.clone();
        let mut best = base;
        for s in rest {
            target = join(&target, s);
            if known.contains_key(&target) {
                best = target.clone();
            } else {
                break;
            }
        }
        if best != module {
            out.insert(best);
        }
    }
    out
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}::{b}")
    }
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let known = modules();
    known
        .iter()
        .map(|(m, f)| {
            let text = std::fs::read_to_string(f).unwrap();
            (m.clone(), imports(m, non_test(&text), &known))
        })
        .collect()
}

/// A cycle in `g`, if there is one, as the modules along it.
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match state.get(m.as_str()) {
                Some(1) => {
                    let at = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, g, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if !state.contains_key(n) {
            if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_module_graph_has_no_cycle() {
    let g = graph();
    assert!(g.len() > 30, "the sources were not found: {g:?}");
    // The reader sees what it must: a known edge of each kind.
    assert!(g["config::build"].contains("config"), "super::");
    assert!(
        g["config"].contains("config::layers"),
        "a parent's use child::"
    );
    assert!(g["http::proxy"].contains("signing::live"), "crate::");
    if let Some(cycle) = find_cycle(&g) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_checker_finds_a_cycle() {
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    g.insert("c".to_string(), BTreeSet::new());
    assert_eq!(find_cycle(&g), None);
}

#[test]
fn the_bottom_layer_imports_nothing_of_the_crate() {
    let g = graph();
    for m in ["os", "clock", "pingora_limits"] {
        assert_eq!(g[m], BTreeSet::new(), "{m}");
    }
    // The pure signing core stays below the request path and the status service.
    for (m, deps) in &g {
        if m.starts_with("signing") && !["signing::live", "signing::watcher"].contains(&m.as_str())
        {
            for d in deps {
                assert!(
                    !["http", "conn", "observe", "config", "tools"]
                        .iter()
                        .any(|top| d == top || d.starts_with(&format!("{top}::"))),
                    "{m} imports {d}"
                );
            }
        }
    }
}

#[test]
fn no_file_holds_more_than_600_lines_of_non_test_code() {
    let mut long = Vec::new();
    for f in modules().values() {
        let text = std::fs::read_to_string(f).unwrap();
        let n = non_test(&text).lines().count();
        if n > 600 {
            long.push(format!("{} ({n})", f.display()));
        }
    }
    assert!(long.is_empty(), "over 600 lines: {long:?}");
}

/// The stock file and the Kubernetes ConfigMap set under `jwt_proxy:` only what differs from the
/// default; each default they show is a commented-out `# name: value` line equal to the table's.
#[test]
fn shipped_configurations_restate_no_default() {
    let default_of = |name: &str| {
        jwt_proxy::config::SETTINGS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, d)| *d)
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["conf/jwt-proxy.yaml", "deploy/kubernetes/jwt-proxy.yaml"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let set = doc["jwt_proxy"].as_mapping().cloned().unwrap_or_default();
        for (k, v) in &set {
            let (k, v) = (k.as_str().unwrap(), serde_yaml::to_string(v).unwrap());
            let default = default_of(k).unwrap_or_else(|| panic!("{file}: {k} is no setting"));
            assert_ne!(v.trim(), default, "{file}: {k} restates its default");
        }
        let mut shown = 0;
        let section = text
            .lines()
            .skip_while(|l| !l.starts_with("jwt_proxy:"))
            .skip(1);
        for line in section.take_while(|l| l.is_empty() || l.starts_with(' ')) {
            let Some((name, rest)) = line
                .trim_start()
                .strip_prefix("# ")
                .and_then(|c| c.split_once(": "))
            else {
                continue;
            };
            if let Some(default) = default_of(name) {
                let value = rest.split("  #").next().unwrap().trim();
                assert_eq!(
                    value, default,
                    "{file}: `# {name}:` shows another value than the default"
                );
                shown += 1;
            }
        }
        assert!(shown >= 10, "{file}: {shown} defaults shown");
    }
}
