//! Configuration errors: what an error is about (a setting, another key, the file) and what is
//! wrong. Every message names its setting.

use std::fmt;

use super::settings::Setting;

/// What a configuration error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum About {
    /// One of our settings.
    Setting(Setting),
    /// Anything else the file or command line names: a Pingora key (`threads`), an unknown key
    /// (`jwt_proxy.http_prot`), `-c`.
    Key(String),
    /// The configuration file as a whole (not YAML, not a mapping); its path once known.
    File(Option<String>),
}

/// A configuration error: what it is about, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub about: About,
    pub problem: String,
}

impl ConfigError {
    /// The name the error shows: a setting's environment name, a key, or the file's path.
    pub fn setting(&self) -> &str {
        match &self.about {
            About::Setting(s) => s.name(),
            About::Key(k) => k,
            About::File(Some(path)) => path,
            About::File(None) => "config file",
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config error: {}: {}", self.setting(), self.problem)
    }
}

impl std::error::Error for ConfigError {}

pub(crate) fn err(setting: Setting, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        about: About::Setting(setting),
        problem: problem.into(),
    }
}

pub(crate) fn key_err(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        about: About::Key(key.into()),
        problem: problem.into(),
    }
}

pub(crate) fn file_err(problem: impl Into<String>) -> ConfigError {
    ConfigError {
        about: About::File(None),
        problem: problem.into(),
    }
}
