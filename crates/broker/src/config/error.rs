//! Errors and warnings from reading a configuration: each names the file and line at fault.

use std::path::PathBuf;

use super::Location;

/// Why a configuration could not be read. Every variant except `Io` names the file, the 1-based line
/// and the directive.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {error}", path.display())]
    Io {
        path: PathBuf,
        /// Shown in the message and not also as the error's source, so that `{:#}` names it once.
        error: std::io::Error,
    },
    /// The file is not valid UTF-8.
    #[error("{}:{line}: the file is not valid UTF-8", file.display())]
    Encoding { file: PathBuf, line: usize },
    /// Neither mqttd nor Mosquitto has this directive.
    #[error("{}:{line}: unknown directive '{directive}'{suggestion}", file.display())]
    Unknown { file: PathBuf, line: usize, directive: String, suggestion: String },
    /// Mosquitto has this directive; mqttd does not implement it yet.
    #[error(
        "{}:{line}: {directive} is a Mosquitto directive mqttd does not support yet ({feature})",
        file.display()
    )]
    Unsupported { file: PathBuf, line: usize, directive: String, feature: &'static str },
    /// The directive is known but its value or position is wrong; `message` says what is accepted.
    #[error("{}:{line}: {directive}: {message}", file.display())]
    Invalid { file: PathBuf, line: usize, directive: String, message: String },
}

impl ConfigError {
    /// The file at fault.
    pub fn file(&self) -> &std::path::Path {
        match self {
            ConfigError::Io { path, .. } => path,
            ConfigError::Encoding { file, .. }
            | ConfigError::Unknown { file, .. }
            | ConfigError::Unsupported { file, .. }
            | ConfigError::Invalid { file, .. } => file,
        }
    }

    /// The 1-based line at fault (0 when the whole file could not be read).
    pub fn line(&self) -> usize {
        match self {
            ConfigError::Io { .. } => 0,
            ConfigError::Encoding { line, .. }
            | ConfigError::Unknown { line, .. }
            | ConfigError::Unsupported { line, .. }
            | ConfigError::Invalid { line, .. } => *line,
        }
    }
}

/// A directive that was accepted but is deprecated or has no effect; the broker should log it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub location: Location,
    pub directive: String,
    pub message: String,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.location, self.directive, self.message)
    }
}
