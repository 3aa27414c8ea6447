//! What can go wrong joining a cluster.

/// Joining the cluster failed: the node does not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to NATS at {urls}: {reason}")]
    Connect { urls: String, reason: String },
    #[error("cannot read the NATS credentials file {path}: {source}")]
    Credentials { path: String, source: std::io::Error },
    #[error("cannot open the JetStream bucket {bucket} (is JetStream enabled on the NATS servers?): {reason}")]
    Bucket { bucket: String, reason: String },
    #[error("cannot subscribe on NATS: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
}
