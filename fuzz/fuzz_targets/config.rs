//! Configuration parsing: a YAML document and environment settings of the fuzzer's choosing
//! either parse or give an error that names a setting.
#![no_main]

use std::collections::HashMap;

use jwt_proxy::config::{Config, SETTINGS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // "yaml\0" then settings, each: one char choosing the variable, then its value.
    let mut parts = text.split('\0');
    let yaml = parts.next().unwrap_or_default();
    let env: HashMap<&str, String> = parts
        .filter_map(|p| {
            let mut chars = p.chars();
            let which = chars.next()? as usize % SETTINGS.len();
            // Keep the fuzzer away from reading files named by the *_FILE settings.
            let name = SETTINGS[which].0;
            (!name.ends_with("_FILE")).then(|| (name, chars.as_str().to_string()))
        })
        .collect();
    if yaml.contains("_file") {
        return;
    }
    if let Err(e) = Config::from_yaml(yaml, &|k| env.get(k).cloned()) {
        assert!(!e.setting().is_empty(), "error without a setting: {e:?}");
        assert!(!e.problem.is_empty(), "error without a problem: {e:?}");
    }
});
