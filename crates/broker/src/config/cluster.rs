//! The `cluster_*` directives (mqttd's own): several mqttd nodes as one broker, sharing state through a
//! NATS JetStream cluster (`mqttd-cluster`). Without `cluster_nats_url` the node is a single broker.

use std::path::PathBuf;

use super::values::{set_once, Line};
use super::ConfigError;

/// How this node joins a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `cluster_name` ("mqttd"): nodes with the same name form one broker; it prefixes every NATS subject
    /// and JetStream bucket, so several clusters can share one NATS system.
    pub name: String,
    /// `cluster_nats_url`, one or more lines (each may list several URLs separated by commas): the NATS
    /// servers to connect to. Empty: no cluster.
    pub nats_urls: Vec<String>,
    /// `cluster_replicas` (1..=5; 1): replicas of the JetStream buckets the cluster keeps (3 for a cluster
    /// that survives the loss of one NATS server).
    pub replicas: usize,
    /// `cluster_nats_credentials`: a NATS credentials file (JWT and NKey seed).
    pub credentials: Option<PathBuf>,
    /// `cluster_nats_username` and `cluster_nats_password`.
    pub username: Option<String>,
    pub password: Option<String>,
    /// `cluster_nats_cafile`: the CA that signs the NATS servers' certificates; TLS is then required.
    pub cafile: Option<PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            name: "mqttd".into(),
            nats_urls: Vec::new(),
            replicas: 1,
            credentials: None,
            username: None,
            password: None,
            cafile: None,
        }
    }
}

impl ClusterConfig {
    /// Whether this node is part of a cluster.
    pub fn enabled(&self) -> bool {
        !self.nats_urls.is_empty()
    }

    /// Applies `line` if it is a `cluster_*` directive; false if it is not one.
    pub(super) fn apply(&mut self, line: &Line<'_>) -> Result<bool, ConfigError> {
        match line.directive {
            "cluster_name" => {
                const WHAT: &str = "a name of letters, digits, '-' and '_'";
                let name = line.text(WHAT)?;
                let valid = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !valid {
                    return Err(line.expected(WHAT, name));
                }
                self.name = name.to_owned();
            }
            "cluster_nats_url" => {
                const WHAT: &str = "NATS URLs such as nats://127.0.0.1:4222, separated by commas";
                let text = line.text(WHAT)?;
                for url in text.split(',').map(str::trim) {
                    if url.is_empty() || url.contains(char::is_whitespace) {
                        return Err(line.expected(WHAT, text));
                    }
                    self.nats_urls.push(url.to_owned());
                }
            }
            "cluster_replicas" => self.replicas = line.int(1, 5)? as usize,
            "cluster_nats_credentials" => set_once(&mut self.credentials, line.path()?, line)?,
            "cluster_nats_username" => set_once(&mut self.username, line.text("a user name")?.to_owned(), line)?,
            "cluster_nats_password" => set_once(&mut self.password, line.text("a password")?.to_owned(), line)?,
            "cluster_nats_cafile" => set_once(&mut self.cafile, line.path()?, line)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The directives above, for suggestions on a misspelt one.
pub(super) const DIRECTIVES: &[&str] = &[
    "cluster_name",
    "cluster_nats_url",
    "cluster_replicas",
    "cluster_nats_credentials",
    "cluster_nats_username",
    "cluster_nats_password",
    "cluster_nats_cafile",
];
