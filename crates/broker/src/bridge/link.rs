//! One bridge's task: keeps its local session, connects to the remote broker (again after a failure, as
//! `restart_timeout` and `start_type` say) and moves messages both ways while connected.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mqttd_client::{Client, Error};
use mqttd_core::{Delivery, Message};
use mqttd_proto::{Packet, Properties, Publish, QoS, RetainHandling, SubscriptionOptions};

use super::options::{connect_options, Backoff};
use super::topics;
use crate::broker::ClientIdentity;
use crate::config::{BridgeConfig, StartType};
use crate::session::{Attach, Expiry, Session};
use crate::Broker;

/// Deliveries sent to the remote before waiting for their acknowledgement: one, since the client waits
/// for each flow to complete.
const WINDOW: usize = 1;

/// A message from the remote not yet acknowledged to it: the store position it waits for, its QoS and
/// packet id.
type Owed = (u64, QoS, Option<mqttd_proto::PacketId>);

/// Why a connected link ended without an error.
enum Ended {
    Shutdown,
    /// A lazy bridge was idle for `idle_timeout`.
    Idle,
}

pub(super) struct Link {
    broker: Arc<Broker>,
    config: BridgeConfig,
    session: Arc<Session>,
    connection_id: u64,
    backoff: Backoff,
    /// Index into `config.addresses` of the next address to try.
    next_address: usize,
    /// Cleared when the remote refused the bridge bit: Mosquitto then connects as a plain client.
    bridge_bit: bool,
}

impl Link {
    /// Attaches the bridge's local session and subscribes it to the `out` topics.
    pub fn new(broker: Arc<Broker>, config: BridgeConfig) -> Link {
        let connection_id = broker.next_id();
        let clean = config.local_cleansession();
        let identity = ClientIdentity {
            client_id: config.local_clientid().into(),
            username: config.local_username.as_deref().map(Into::into),
            listener: 0,
        };
        let expiry = if clean { Expiry::Immediate } else { Expiry::Never };
        let attach = Attach { identity, clean_start: clean, expiry, will: None, connection_id };
        let (session, _, _) = broker.attach(attach);
        session.state.lock().online = false;
        let max_qos = QoS::from_u8(broker.settings.max_qos(0)).unwrap_or(QoS::ExactlyOnce);
        for topic in config.topics.iter().filter(|t| t.is_out()) {
            // Mosquitto's bridge subscribes locally with No Local and Retain As Published.
            let options = SubscriptionOptions {
                qos: topic.qos.min(max_qos),
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            };
            broker.subscribe(&session, &topic.local_topic(), options, None);
        }
        let backoff = Backoff::new(config.restart);
        Link { broker, config, session, connection_id, backoff, next_address: 0, bridge_bit: true }
    }

    pub async fn run(mut self) {
        let name = self.config.name.clone();
        if self.config.notifications {
            self.notify_local(b"0");
        }
        while !self.broker.shutting_down() {
            if self.config.start_type == StartType::Lazy && !self.threshold_reached().await {
                break;
            }
            let (host, port) = self.config.addresses[self.next_address].clone();
            tracing::info!("bridge {name}: connecting to {host}:{port}");
            let outcome = match self.connect(&host, port).await {
                Ok(client) => {
                    tracing::info!("bridge {name}: connected to {host}:{port} as {}", self.config.remote_clientid());
                    self.backoff.reset();
                    if !self.config.round_robin {
                        self.next_address = 0;
                    }
                    let outcome = self.connected(client).await;
                    self.session.state.lock().online = false;
                    if self.config.notifications {
                        self.notify_local(b"0");
                    }
                    outcome
                }
                Err(e) => {
                    tracing::warn!("bridge {name}: connecting to {host}:{port} failed: {e}");
                    self.next_address = (self.next_address + 1) % self.config.addresses.len();
                    if matches!(e, Error::Refused { code: 1, .. })
                        && self.bridge_bit
                        && !self.config.protocol_version.is_v5()
                    {
                        tracing::info!("bridge {name}: the remote refused the bridge bit; trying as a plain client");
                        self.bridge_bit = false;
                        continue;
                    }
                    Err(e)
                }
            };
            match outcome {
                Ok(Ended::Shutdown) => break,
                Ok(Ended::Idle) => {
                    tracing::info!(
                        "bridge {name}: idle for {}s, stopped until messages are queued",
                        self.config.idle_timeout
                    );
                    continue;
                }
                Err(e) if self.config.start_type == StartType::Once => {
                    tracing::warn!("bridge {name}: {e}; not restarted (start_type once)");
                    break;
                }
                Err(_) => {}
            }
            let wait = self.backoff.step();
            tracing::info!("bridge {name}: retrying in {}s", wait.as_secs());
            let _ = tokio::time::timeout(wait, self.shutdown_begun()).await;
        }
        self.broker.detach(&self.session, self.connection_id, false, None);
    }

    async fn connect(&self, host: &str, port: u16) -> Result<Client, Error> {
        let options = connect_options(&self.config, host, port, self.bridge_bit);
        Client::connect(&options).await
    }

    /// Serves a connected link until it fails (`Err`), shutdown begins, or a lazy bridge idles.
    async fn connected(&mut self, mut client: Client) -> Result<Ended, Error> {
        self.subscribe_remote(&mut client).await?;
        if self.config.notifications {
            if !self.config.notifications_local_only {
                let topic = self.config.notification_topic();
                let message = mqttd_client::Message {
                    topic,
                    payload: Bytes::from_static(b"1"),
                    qos: QoS::AtLeastOnce,
                    retain: true,
                    properties: Properties::default(),
                };
                client.publish(message).await?;
            }
            self.notify_local(b"1");
        }
        {
            let mut state = self.session.state.lock();
            state.online = true;
            // Unacknowledged messages go again, with their packet ids [MQTT-4.4.0-1].
            state.resume();
        }
        self.queue_retained();
        let result = self.exchange(&mut client).await;
        match result {
            Ok(ended) => {
                if self.config.notifications && !self.config.notifications_local_only {
                    let topic = self.config.notification_topic();
                    let message = mqttd_client::Message {
                        topic,
                        payload: Bytes::from_static(b"0"),
                        qos: QoS::AtLeastOnce,
                        retain: true,
                        properties: Properties::default(),
                    };
                    let _ = client.publish(message).await;
                }
                let _ = client.disconnect(0, Properties::default()).await;
                Ok(ended)
            }
            Err(e) => {
                tracing::warn!("bridge {}: connection lost: {e}", self.config.name);
                Err(e)
            }
        }
    }

    /// SUBSCRIBE to the `in` topics (No Local and Retain As Published in 5.0, as Mosquitto); UNSUBSCRIBE
    /// from the `out`-only ones when `bridge_attempt_unsubscribe` (a remote session may remember them).
    async fn subscribe_remote(&self, client: &mut Client) -> Result<(), Error> {
        let v5 = self.config.protocol_version.is_v5();
        for topic in &self.config.topics {
            let filter = topic.remote_topic();
            if topic.is_in() {
                let options = SubscriptionOptions {
                    qos: topic.qos,
                    no_local: v5,
                    retain_as_published: v5,
                    retain_handling: RetainHandling::SendAtSubscribe,
                };
                let ack = client.subscribe(vec![(filter.clone(), options)], Properties::default()).await?;
                if ack.reasons.iter().any(|r| *r >= 0x80) {
                    tracing::warn!("bridge {}: the remote refused the subscription to {filter}", self.config.name);
                }
            } else if self.config.attempt_unsubscribe {
                client.unsubscribe(vec![filter], Properties::default()).await?;
            }
        }
        Ok(())
    }

    /// Moves messages both ways until the link fails, shutdown begins or a lazy bridge idles.
    async fn exchange(&mut self, client: &mut Client) -> Result<Ended, Error> {
        let idle = Duration::from_secs(self.config.idle_timeout);
        let lazy = self.config.start_type == StartType::Lazy;
        let mut last_activity = tokio::time::Instant::now();
        // Messages from the remote routed here, acknowledged to it only once what they changed is durable
        // [issue 13: nothing acknowledged is lost]; the remote resends the others after a crash.
        let mut owed: VecDeque<Owed> = VecDeque::new();
        loop {
            if self.broker.shutting_down() {
                return Ok(Ended::Shutdown);
            }
            if self.send_outbox(client).await? {
                last_activity = tokio::time::Instant::now();
            }
            let idle_at = last_activity + idle;
            let next_owed = owed.front().map_or(0, |(position, ..)| *position);
            tokio::select! {
                received = client.recv() => {
                    let publish = received?;
                    let (qos, packet_id) = (publish.qos, publish.packet_id);
                    owed.push_back((self.route_in(publish), qos, packet_id));
                    self.ack_durable(client, &mut owed).await?;
                    last_activity = tokio::time::Instant::now();
                }
                () = self.durable(next_owed), if !owed.is_empty() => self.ack_durable(client, &mut owed).await?,
                () = self.outbox_ready() => {}
                () = tokio::time::sleep_until(idle_at), if lazy => return Ok(Ended::Idle),
            }
        }
    }

    /// Sends what the local outbox holds (owed resends first); true if anything was sent.
    async fn send_outbox(&mut self, client: &mut Client) -> Result<bool, Error> {
        let mut sent = false;
        loop {
            let now = Instant::now();
            let next = {
                let mut state = self.session.state.lock();
                match state.next_resend(WINDOW, now) {
                    Some(Packet::Publish(p)) => Some(p),
                    Some(_) => None,
                    None => state.next_delivery(WINDOW, now).map(|o| o.delivery.to_publish(o.packet_id, false, now)),
                }
            };
            let Some(publish) = next else { return Ok(sent) };
            sent = true;
            let packet_id = publish.packet_id;
            let qos = publish.qos;
            if let Some(publish) = self.outgoing(publish, client) {
                match client.publish_packet(publish).await {
                    Ok(_) | Err(Error::PublishRefused { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            if let Some(id) = packet_id {
                let mut state = self.session.state.lock();
                let _ = match qos {
                    QoS::ExactlyOnce => state.pubrec(id, 0).and_then(|_| state.pubcomp(id)),
                    _ => state.puback(id),
                };
            }
        }
    }

    /// The PUBLISH for the remote: topic remapped, RETAIN cleared unless `bridge_outgoing_retain`, left
    /// out when over `bridge_max_packet_size` or the remote's Maximum Packet Size.
    fn outgoing(&self, mut publish: Publish, client: &Client) -> Option<Publish> {
        let (topic, _) = topics::outgoing(&self.config.topics, &publish.topic)?;
        publish.topic = topic;
        publish.retain &= self.config.outgoing_retain;
        let remote_max = client.connack().properties.maximum_packet_size.unwrap_or(0);
        let limit = [self.config.max_packet_size, remote_max].into_iter().filter(|m| *m > 0).min();
        let size = mqttd_proto::encoded_len(&Packet::Publish(publish.clone()), self.config.protocol_version);
        if limit.is_some_and(|max| size > max as usize) {
            tracing::warn!(
                "bridge {}: a message of {size} bytes on {} is over the packet size limit; left out",
                self.config.name,
                publish.topic
            );
            return None;
        }
        Some(publish)
    }

    /// A message from the remote, published here on its remapped topic by the bridge's session (so No
    /// Local keeps it from going back out).
    /// Returns the durable store's position its acknowledgement to the remote waits for (0: none).
    fn route_in(&self, publish: Publish) -> u64 {
        let Some((topic, _)) = topics::incoming(&self.config.topics, &publish.topic) else { return 0 };
        if !self.broker.may_write_session(&self.session, &topic) {
            tracing::info!(client_id = %self.session.client_id, %topic, "bridge publish denied");
            return 0;
        }
        let mut properties = publish.properties;
        properties.topic_alias = None;
        properties.subscription_identifiers.clear();
        let expires_at = properties.message_expiry_interval.map(|s| Instant::now() + Duration::from_secs(u64::from(s)));
        let message = Message {
            topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties: Message::store_properties(properties),
            expires_at,
            origin: self.session.id,
            stored: Default::default(),
        };
        self.broker.route(Arc::new(message)).durable
    }

    /// Acknowledges to the remote, in order, the messages received whose durable position the store has
    /// passed (all of them without a store).
    async fn ack_durable(&self, client: &mut Client, owed: &mut VecDeque<Owed>) -> Result<(), Error> {
        let durable = self.broker.store().map_or(u64::MAX, |s| s.durable());
        while let Some(&(_, qos, packet_id)) = owed.front().filter(|(position, ..)| *position <= durable) {
            client.ack(qos, packet_id).await?;
            owed.pop_front();
        }
        Ok(())
    }

    /// Publishes the bridge state here, retained, as Mosquitto does.
    fn notify_local(&self, payload: &'static [u8]) {
        let topic = self.config.notification_topic();
        let message = Message::new(topic, Bytes::from_static(payload), QoS::AtLeastOnce, true, self.session.id);
        self.broker.route(Arc::new(message));
    }

    /// Local retained messages of the `out` topics go to the remote at each connection, as Mosquitto's.
    fn queue_retained(&self) {
        let now = Instant::now();
        for topic in self.config.topics.iter().filter(|t| t.is_out()) {
            let messages = self.broker.retained.read().matching(&topic.local_topic(), now);
            for message in messages {
                let qos = message.qos.min(topic.qos);
                let delivery =
                    Delivery { qos, retain: true, message, subscription_ids: Vec::new(), shared_by: 1, group: 0 };
                self.broker.deliver(&self.session, delivery);
            }
        }
    }

    /// Until the store's durable position reaches `position` (at once without a store).
    async fn durable(&self, position: u64) {
        let Some(store) = self.broker.store() else { return };
        poll_fn(|cx| store.poll_durable(position, cx)).await
    }

    /// Resolves when the outbox has something to send, or shutdown begins.
    async fn outbox_ready(&self) {
        let (session, broker) = (&self.session, &self.broker);
        poll_fn(|cx| {
            let mut state = session.state.lock();
            if state.has_outgoing() {
                return Poll::Ready(());
            }
            state.register(cx.waker());
            // Checked after registering, under the lock `Broker::begin_shutdown`'s wake takes.
            if broker.shutting_down() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Resolves once shutdown begins.
    async fn shutdown_begun(&self) {
        let (session, broker) = (&self.session, &self.broker);
        poll_fn(|cx| {
            session.state.lock().register(cx.waker());
            if broker.shutting_down() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// A lazy bridge waits until `threshold` messages are queued for it; false if shutdown came first.
    async fn threshold_reached(&self) -> bool {
        let (session, broker, threshold) = (&self.session, &self.broker, self.config.threshold);
        poll_fn(|cx| {
            let mut state = session.state.lock();
            if state.queued() >= threshold {
                return Poll::Ready(true);
            }
            state.register(cx.waker());
            if broker.shutting_down() {
                Poll::Ready(false)
            } else {
                Poll::Pending
            }
        })
        .await
    }
}
