//! Wills published once in the whole cluster. A will may be fired by two nodes: the node its
//! connection was on (its timer, or a takeover) and a node that claimed the session because the first
//! seemed dead, or the node a returning client claimed it from. Each publishes it to the JetStream stream
//! `<name>_wills` with `Nats-Msg-Id: will/<client id>/<epoch of the connection that set it>`; JetStream
//! keeps one message per id within its duplicate window, and only the node whose copy was the first
//! routes the will (as a message it accepted: to this node's subscribers and to the other nodes). The
//! stream is a ledger of ids, not a queue: nobody consumes it.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::Publish, stream};
use async_nats::Client;
use mqttd_core::cluster::Node;
use mqttd_core::Message;

use crate::{envelope, subject, Error, Options};

/// How long an id is remembered: longer than any failover (heartbeat expiry plus a claim) takes.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(3600);
const OPEN_WAIT: Duration = Duration::from_secs(30);

pub struct Wills {
    js: jetstream::Context,
    prefix: String,
    node: Arc<dyn Node>,
}

impl Wills {
    pub async fn open(client: &Client, options: &Options, node: Arc<dyn Node>) -> Result<Wills, Error> {
        let js = jetstream::new(client.clone());
        let name = format!("{}_wills", options.name);
        let prefix = format!("mqttd.{}.w", options.name);
        let config = stream::Config {
            name: name.clone(),
            description: Some("mqttd wills published, one per Nats-Msg-Id".into()),
            subjects: vec![format!("{prefix}.>")],
            max_age: DUPLICATE_WINDOW,
            duplicate_window: DUPLICATE_WINDOW,
            num_replicas: options.replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        let deadline = tokio::time::Instant::now() + OPEN_WAIT;
        loop {
            match js.get_or_create_stream(config.clone()).await {
                Ok(_) => return Ok(Wills { js, prefix, node }),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::info!("cluster: cannot open the stream {name} yet: {e}; trying again");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(Error::Bucket { bucket: name, reason: e.to_string() }),
            }
        }
    }

    /// Publishes the will of `client_id` set by its connection of `epoch`, unless another node did.
    pub fn publish(self: &Arc<Self>, client_id: &str, epoch: u64, message: Arc<Message>) {
        let wills = self.clone();
        let id = format!("will/{client_id}/{epoch}");
        let subject = format!("{}.{}", self.prefix, subject::token(client_id));
        tokio::spawn(async move {
            let origin = envelope::Origin { node: 0, sequence: epoch };
            let Ok(bytes) = envelope::encode(&message, origin) else { return };
            let publish = Publish::build().payload(bytes).message_id(&id);
            let acked = match wills.js.send_publish(subject, publish).await {
                Ok(ack) => ack.await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match acked {
                Ok(ack) if ack.duplicate => tracing::info!(%id, "cluster: will already published by another node"),
                Ok(_) => wills.node.route_accepted(message),
                Err(e) => {
                    // Better twice than never: routed anyway.
                    tracing::warn!(%id, "cluster: will not recorded in JetStream ({e}); published anyway");
                    wills.node.route_accepted(message);
                }
            }
        });
    }
}
