//! [`Client`]: one MQTT connection, driven by the caller's `async` calls (no background task).
//!
//! While a call waits for its acknowledgement, the client keeps answering the broker: it acknowledges
//! incoming QoS 1 and 2 messages (queueing them for [`Client::recv`]; with `ConnectOptions::manual_acks`
//! the caller does, with [`Client::ack`]), answers PUBREL, and sends PINGREQ when the keep-alive interval
//! passes without traffic.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqttd_proto::{
    decode, encode, reason, topic, Ack, ConnAck, Disconnect, Limits, Packet, PacketId, Properties, ProtocolVersion,
    Publish, QoS, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::options::ConnectOptions;
use crate::transport::{self, Transport};

/// A message to publish.
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// 5.0 PUBLISH properties; ignored before 5.0.
    pub properties: Properties,
}

/// A connected MQTT client.
pub struct Client {
    stream: Box<dyn Transport>,
    version: ProtocolVersion,
    /// Bytes read but not yet decoded; kept here so a cancelled read loses nothing.
    read_buf: BytesMut,
    write_buf: BytesMut,
    limits: Limits,
    connack: ConnAck,
    next_packet_id: u16,
    keep_alive: Option<Duration>,
    last_sent: Instant,
    ping_outstanding: bool,
    /// Messages received while a call waited for something else, in arrival order.
    incoming: VecDeque<Publish>,
    /// Inbound QoS 2 packet ids already delivered and waiting for PUBREL: a resent PUBLISH with one of
    /// these ids is acknowledged again but not delivered twice.
    awaiting_release: HashSet<u16>,
    /// `ConnectOptions::trace`.
    trace: Option<crate::options::PacketTrace>,
    /// `ConnectOptions::manual_acks`, and the inbound QoS 2 packet ids returned by `recv` and not yet
    /// acknowledged by the caller (a resend of one of these is not acknowledged for it).
    manual_acks: bool,
    unacknowledged: HashSet<u16>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("version", &self.version).field("connack", &self.connack).finish()
    }
}

impl Client {
    /// Opens the transport the options name, sends CONNECT and waits for a successful CONNACK.
    pub async fn connect(options: &ConnectOptions) -> Result<Client> {
        let stream = transport::open(options).await?;
        Client::handshake(stream, options).await
    }

    /// Sends CONNECT on an already open transport and waits for a successful CONNACK.
    pub async fn handshake(stream: Box<dyn Transport>, options: &ConnectOptions) -> Result<Client> {
        let keep_alive = options.keep_alive;
        let mut client = Client {
            stream,
            version: options.version,
            read_buf: BytesMut::with_capacity(4096),
            write_buf: BytesMut::with_capacity(256),
            limits: Limits::default(),
            connack: ConnAck { session_present: false, code: 0, properties: Properties::default() },
            next_packet_id: 0,
            keep_alive: None,
            last_sent: Instant::now(),
            ping_outstanding: false,
            incoming: VecDeque::new(),
            awaiting_release: HashSet::new(),
            trace: options.trace.clone(),
            manual_acks: options.manual_acks,
            unacknowledged: HashSet::new(),
        };
        client.send(&Packet::Connect(Box::new(options.connect_packet())), "sending CONNECT").await?;
        let packet = match tokio::time::timeout(options.connect_timeout, client.read_packet("waiting for CONNACK"))
            .await
        {
            Ok(packet) => packet.map_err(|e| crate::tls::refused_after_handshake(e, &options.host, options.port))?,
            Err(_) => return Err(Error::ConnAckTimeout(options.connect_timeout)),
        };
        let connack = match packet {
            Packet::ConnAck(c) => c,
            other => return Err(Error::Unexpected { packet: other.name(), during: "instead of CONNACK" }),
        };
        if connack.code != 0 {
            let reason_string = connack.properties.reason_string.clone();
            return Err(Error::Refused { version: options.version, code: connack.code, reason_string });
        }
        let keep_alive = connack.properties.server_keep_alive.unwrap_or(keep_alive);
        client.keep_alive = (keep_alive > 0).then(|| Duration::from_secs(keep_alive.into()));
        client.connack = connack;
        Ok(client)
    }

    /// The CONNACK the broker accepted us with (session present, 5.0 properties such as an assigned id).
    pub fn connack(&self) -> &ConnAck {
        &self.connack
    }

    /// The protocol version of this connection.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Publishes and, for QoS 1 and 2, waits for the whole acknowledgement flow. Returns the broker's
    /// reason code (5.0; 0 otherwise), e.g. 0x10 "no matching subscribers", which is not a failure.
    pub async fn publish(&mut self, message: Message) -> Result<u8> {
        topic::validate_topic_name(&message.topic)
            .map_err(|reason| Error::InvalidTopic { topic: message.topic.clone(), reason })?;
        let packet_id = match message.qos {
            QoS::AtMostOnce => None,
            _ => Some(self.packet_id()),
        };
        let publish = Publish {
            dup: false,
            qos: message.qos,
            retain: message.retain,
            topic: message.topic,
            packet_id,
            properties: message.properties,
            payload: message.payload,
        };
        self.publish_packet(publish).await
    }

    /// Sends `publish` as it is (its packet id and DUP flag chosen by the caller, e.g. a bridge resending
    /// a message with the id it had [MQTT-4.4.0-1]) and waits for its acknowledgement flow, as
    /// [`Client::publish`]. Packet ids the caller picks must not clash with those [`Client::publish`] uses:
    /// use one or the other on a connection.
    pub async fn publish_packet(&mut self, mut publish: Publish) -> Result<u8> {
        if !self.version.is_v5() {
            publish.properties = Properties::default();
        }
        let (topic, qos, packet_id) = (publish.topic.clone(), publish.qos, publish.packet_id);
        self.send(&Packet::Publish(publish), "sending PUBLISH").await?;
        let Some(id) = packet_id else { return Ok(0) };
        let refused = |ack: Ack| Error::PublishRefused {
            topic: topic.clone(),
            code: ack.reason,
            reason_string: ack.properties.reason_string,
        };
        if qos == QoS::AtLeastOnce {
            let ack = self.wait_ack(id, "waiting for PUBACK", |p| matches!(p, Packet::PubAck(_))).await?;
            return if ack.reason >= 0x80 { Err(refused(ack)) } else { Ok(ack.reason) };
        }
        let rec = self.wait_ack(id, "waiting for PUBREC", |p| matches!(p, Packet::PubRec(_))).await?;
        if rec.reason >= 0x80 {
            return Err(refused(rec));
        }
        self.send(&Packet::PubRel(Ack::new(id)), "sending PUBREL").await?;
        let comp = self.wait_ack(id, "waiting for PUBCOMP", |p| matches!(p, Packet::PubComp(_))).await?;
        if comp.reason >= 0x80 {
            return Err(refused(comp));
        }
        Ok(rec.reason)
    }

    /// Subscribes and returns the SUBACK (one return / reason code per filter; 0x80 and up are refusals).
    pub async fn subscribe(
        &mut self,
        filters: Vec<(String, SubscriptionOptions)>,
        properties: Properties,
    ) -> Result<SubAck> {
        for (filter, _) in &filters {
            topic::validate_topic_filter(filter)
                .map_err(|reason| Error::InvalidTopic { topic: filter.clone(), reason })?;
        }
        if !self.version.is_v5() && !properties.is_empty() {
            return Err(Error::NeedsV5("SUBSCRIBE properties"));
        }
        let packet_id = self.packet_id();
        self.send(&Packet::Subscribe(Subscribe { packet_id, filters, properties }), "sending SUBSCRIBE").await?;
        loop {
            match self.next_control("waiting for SUBACK").await? {
                Packet::SubAck(s) if s.packet_id == packet_id => return Ok(s),
                _ => continue,
            }
        }
    }

    /// Unsubscribes and returns the UNSUBACK (reason codes only in 5.0).
    pub async fn unsubscribe(&mut self, filters: Vec<String>, properties: Properties) -> Result<UnsubAck> {
        let packet_id = self.packet_id();
        let unsubscribe = Unsubscribe { packet_id, filters, properties };
        self.send(&Packet::Unsubscribe(unsubscribe), "sending UNSUBSCRIBE").await?;
        loop {
            match self.next_control("waiting for UNSUBACK").await? {
                Packet::UnsubAck(u) if u.packet_id == packet_id => return Ok(u),
                _ => continue,
            }
        }
    }

    /// The next message from the broker, already acknowledged as its QoS requires. A QoS 2 message is
    /// returned once even if the broker resends it before PUBREL.
    ///
    /// Cancel safe: bytes read are kept in the client, so a `select!` may drop this future and call again.
    pub async fn recv(&mut self) -> Result<Publish> {
        loop {
            if let Some(message) = self.incoming.pop_front() {
                return Ok(message);
            }
            // Acknowledgements for nothing we wait on (left from an earlier session) are ignored.
            let _ = self.handle_next("waiting for messages").await?;
        }
    }

    /// Acknowledges a message [`Client::recv`] returned (with `ConnectOptions::manual_acks`): PUBACK for
    /// QoS 1, PUBREC for QoS 2 (PUBCOMP follows PUBREL as usual), nothing for QoS 0.
    pub async fn ack(&mut self, qos: QoS, packet_id: Option<PacketId>) -> Result<()> {
        match (qos, packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.send(&Packet::PubAck(Ack::new(id)), "sending PUBACK").await,
            (QoS::ExactlyOnce, Some(id)) => {
                self.unacknowledged.remove(&id.get());
                self.send(&Packet::PubRec(Ack::new(id)), "sending PUBREC").await
            }
            _ => Ok(()),
        }
    }

    /// Sends DISCONNECT (with `reason` and properties in 5.0) and closes the connection.
    pub async fn disconnect(mut self, reason: u8, properties: Properties) -> Result<()> {
        let (reason, properties) = if self.version.is_v5() { (reason, properties) } else { (0, Properties::default()) };
        self.send(&Packet::Disconnect(Disconnect { reason, properties }), "sending DISCONNECT").await?;
        self.stream.shutdown().await.map_err(|source| Error::Io { step: "closing the connection", source })
    }

    /// Closes the connection without DISCONNECT, as a crash would: the broker publishes the will.
    pub fn abort(self) {
        drop(self.stream);
    }

    fn packet_id(&mut self) -> PacketId {
        self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
        PacketId::new(self.next_packet_id).expect("checked_add keeps the id at 1 or more")
    }

    async fn wait_ack(&mut self, id: PacketId, during: &'static str, wanted: impl Fn(&Packet) -> bool) -> Result<Ack> {
        loop {
            let packet = self.next_control(during).await?;
            if !wanted(&packet) {
                continue;
            }
            match packet {
                Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubComp(a) if a.packet_id == id => return Ok(a),
                _ => continue,
            }
        }
    }

    /// Reads packets, handling PUBLISH, PUBREL, PINGRESP and DISCONNECT here, until another one arrives.
    async fn next_control(&mut self, during: &'static str) -> Result<Packet> {
        loop {
            if let Some(packet) = self.handle_next(during).await? {
                return Ok(packet);
            }
        }
    }

    /// Reads one packet and handles it if it is PUBLISH, PUBREL, PINGRESP or DISCONNECT; returns the others.
    async fn handle_next(&mut self, during: &'static str) -> Result<Option<Packet>> {
        let packet = self.read_packet(during).await?;
        match packet {
            Packet::Publish(p) => self.on_publish(p).await?,
            Packet::PubRel(rel) => {
                self.awaiting_release.remove(&rel.packet_id.get());
                self.send(&Packet::PubComp(Ack::new(rel.packet_id)), "sending PUBCOMP").await?;
            }
            Packet::PingResp => self.ping_outstanding = false,
            Packet::Disconnect(d) => {
                return Err(Error::Disconnected { code: d.reason, reason_string: d.properties.reason_string })
            }
            Packet::Connect(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) | Packet::PingReq => {
                return Err(Error::Unexpected { packet: packet.name(), during })
            }
            other => return Ok(Some(other)),
        }
        Ok(None)
    }

    async fn on_publish(&mut self, publish: Publish) -> Result<()> {
        match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => self.incoming.push_back(publish),
            // Acknowledged by the caller ([`Client::ack`]); a QoS 2 message is still delivered once, and a
            // resend of one the caller already acknowledged is acknowledged again.
            (QoS::AtLeastOnce, Some(_)) if self.manual_acks => self.incoming.push_back(publish),
            (QoS::ExactlyOnce, Some(id)) if self.manual_acks => {
                if self.awaiting_release.insert(id.get()) {
                    self.unacknowledged.insert(id.get());
                    self.incoming.push_back(publish);
                } else if !self.unacknowledged.contains(&id.get()) {
                    self.send(&Packet::PubRec(Ack::new(id)), "sending PUBREC").await?;
                }
            }
            (QoS::AtLeastOnce, Some(id)) => {
                self.incoming.push_back(publish);
                self.send(&Packet::PubAck(Ack::new(id)), "sending PUBACK").await?;
            }
            (QoS::ExactlyOnce, Some(id)) => {
                if self.awaiting_release.insert(id.get()) {
                    self.incoming.push_back(publish);
                }
                self.send(&Packet::PubRec(Ack::new(id)), "sending PUBREC").await?;
            }
            _ => return Err(Error::Unexpected { packet: "PUBLISH without packet id", during: "receiving" }),
        }
        Ok(())
    }

    /// Reads one packet, sending PINGREQ when the keep-alive interval passes without anything sent.
    async fn read_packet(&mut self, during: &'static str) -> Result<Packet> {
        loop {
            if let Some(packet) = decode(&mut self.read_buf, self.version, &self.limits)? {
                if let Some(trace) = &self.trace {
                    (trace.0)(crate::options::Direction::Received, &packet);
                }
                return Ok(packet);
            }
            let deadline = self.keep_alive.map(|k| self.last_sent + k);
            let read = tokio::select! {
                read = self.stream.read_buf(&mut self.read_buf) => read,
                () = sleep_until(deadline) => {
                    self.keep_alive_due().await?;
                    continue;
                }
            };
            match read {
                Ok(0) => return Err(Error::Closed { during }),
                Ok(_) => {}
                Err(source) => return Err(Error::Io { step: during, source }),
            }
        }
    }

    async fn keep_alive_due(&mut self) -> Result<()> {
        if self.ping_outstanding {
            let secs = self.keep_alive.map_or(0, |k| k.as_secs());
            return Err(Error::KeepAliveTimeout(u16::try_from(secs).unwrap_or(u16::MAX)));
        }
        self.ping_outstanding = true;
        self.send(&Packet::PingReq, "sending PINGREQ").await
    }

    async fn send(&mut self, packet: &Packet, step: &'static str) -> Result<()> {
        if let Some(trace) = &self.trace {
            (trace.0)(crate::options::Direction::Sent, packet);
        }
        self.write_buf.clear();
        encode(packet, self.version, &mut self.write_buf)?;
        self.stream.write_all(&self.write_buf).await.map_err(|source| Error::Io { step, source })?;
        self.stream.flush().await.map_err(|source| Error::Io { step, source })?;
        self.last_sent = Instant::now();
        Ok(())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Whether a SUBACK / UNSUBACK / PUBACK code is a refusal.
pub fn is_failure(code: u8) -> bool {
    code >= 0x80
}

/// A reason or return code in words, for the protocol version in use.
pub fn code_name(version: ProtocolVersion, code: u8) -> &'static str {
    if version.is_v5() {
        reason::name(code)
    } else if code == 0x80 {
        "failure"
    } else {
        reason::name(code)
    }
}
