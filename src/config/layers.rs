//! The layers a setting's text comes from: its default, then the file, then the environment; and
//! the typed readers of that text (numbers, ports, durations...), each error naming its setting.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::error::{err, key_err, ConfigError};
use super::settings::{Setting, SETTINGS};
use crate::signing::key::KeyEncoding;

/// The closest of `known` to `word`, if it is close (an edit distance of at most 2).
pub(super) fn did_you_mean<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    pub(super) fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    known
        .into_iter()
        .map(|k| (distance(word, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!(" (did you mean {k}?)"))
        .unwrap_or_default()
}

pub(super) fn yaml_key_text(k: &serde_yaml::Value) -> String {
    match k {
        serde_yaml::Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into()),
    }
}

/// Setting → raw text: the default, then the file, then the environment over it; and the
/// settings the file gave a value that the environment replaced with another.
pub(super) struct Raw(BTreeMap<Setting, String>, pub(super) Vec<Setting>);

impl Raw {
    pub(super) fn new(
        file: Option<serde_yaml::Value>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Raw, ConfigError> {
        let mut values: BTreeMap<Setting, String> = Setting::ALL
            .iter()
            .map(|s| (*s, s.default_value().to_string()))
            .collect();
        let mut in_file = Vec::new();
        match file {
            None | Some(serde_yaml::Value::Null) => {}
            Some(serde_yaml::Value::Mapping(m)) => {
                for (k, v) in m {
                    let key = yaml_key_text(&k);
                    let upper = key.to_ascii_uppercase();
                    let Some(setting) = Setting::ALL.iter().find(|s| s.name() == upper) else {
                        let names: Vec<String> = SETTINGS
                            .iter()
                            .map(|(n, _)| n.to_ascii_lowercase())
                            .collect();
                        let hint = did_you_mean(&key, names.iter().map(String::as_str));
                        return Err(key_err(
                            format!("jwt_proxy.{key}"),
                            format!("unknown setting{hint}"),
                        ));
                    };
                    let text = match v {
                        serde_yaml::Value::Null => String::new(),
                        serde_yaml::Value::String(s) => s,
                        serde_yaml::Value::Number(n) => n.to_string(),
                        serde_yaml::Value::Bool(b) => b.to_string(),
                        _ => return Err(err(*setting, "must be a single value")),
                    };
                    values.insert(*setting, text);
                    in_file.push(*setting);
                }
            }
            Some(_) => return Err(key_err("jwt_proxy", "must be a mapping of settings")),
        }
        let mut shadowed = Vec::new();
        for s in Setting::ALL {
            // Set to nothing (`FOO=` or `FOO=${FOO:-}` in compose) is the same as unset.
            if let Some(v) = env(s.name()).filter(|v| !v.trim().is_empty()) {
                // The stock files set no default (they show them commented out), so
                // `HTTP_PORT=9090 make run` is no surprise to warn about.
                if in_file.contains(s) && values.get(s) != Some(&v) {
                    shadowed.push(*s);
                }
                values.insert(*s, v);
            }
        }
        Ok(Raw(values, shadowed))
    }

    /// The raw text (every setting has one: its default at least).
    pub(super) fn get(&self, s: Setting) -> &str {
        self.0
            .get(&s)
            .map(String::as_str)
            .unwrap_or(s.default_value())
    }

    /// The trimmed text, `None` when empty.
    pub(super) fn opt(&self, s: Setting) -> Option<String> {
        Some(self.get(s).trim())
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    }

    pub(super) fn num<T: std::str::FromStr>(
        &self,
        s: Setting,
        what: &str,
    ) -> Result<T, ConfigError> {
        let v = self.get(s).trim();
        v.parse()
            .map_err(|_| err(s, format!("{v:?} is not {what}")))
    }

    /// A whole number within `lo..=hi`.
    pub(super) fn within<T>(&self, s: Setting, what: &str, lo: T, hi: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let n: T = self.num(s, what)?;
        if n < lo || n > hi {
            return Err(err(s, format!("{n} is out of range ({lo}-{hi})")));
        }
        Ok(n)
    }

    pub(super) fn port(&self, s: Setting) -> Result<u16, ConfigError> {
        match self.num::<u32>(s, "a port number (1-65535)")? {
            p @ 1..=65535 => Ok(p as u16),
            p => Err(err(s, format!("{p} is out of range (1-65535)"))),
        }
    }

    pub(super) fn addr(&self, s: Setting) -> Result<IpAddr, ConfigError> {
        let v = self.get(s).trim();
        v.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| err(s, format!("{v:?} is not an IP address")))
    }

    pub(super) fn millis(&self, s: Setting) -> Result<Duration, ConfigError> {
        match self.num::<u64>(s, "a whole number of milliseconds")? {
            0 => Err(err(s, "must be greater than 0")),
            ms => Ok(Duration::from_millis(ms)),
        }
    }

    pub(super) fn secs(&self, s: Setting) -> Result<u64, ConfigError> {
        match self.num::<u64>(s, "a whole number of seconds")? {
            0 => Err(err(s, "must be at least 1")),
            n => Ok(n),
        }
    }

    pub(super) fn flag(&self, s: Setting) -> Result<bool, ConfigError> {
        match self.get(s).trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            v => Err(err(s, format!("{v:?} is not true or false"))),
        }
    }

    pub(super) fn encoding(&self, s: Setting) -> Result<KeyEncoding, ConfigError> {
        KeyEncoding::parse(self.get(s)).ok_or_else(|| {
            err(
                s,
                format!("{:?} is not one of text, hex, base64", self.get(s)),
            )
        })
    }
}
