//! `mqtt subscribe` / `mqtt sub`: subscribe, print each message, reconnect when the connection is lost.
//!
//! SIGINT closes the socket without DISCONNECT (so the broker publishes the will), unless `--clean-exit`.

use std::io::Write;
use std::time::Duration;

use mqttd_client::proto::{Properties, ProtocolVersion, Publish, QoS, RetainHandling, SubscriptionOptions};
use mqttd_client::{code_name, Client, ConnectOptions, Error, Message};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::Instant;

use crate::args::{pairs, SubArgs, Version};
use crate::fail::{self, Failure};
use crate::{options, output};

/// How one connection's receive loop ended.
enum End {
    /// `--count` reached, or `--retained-only` saw a message that is not retained.
    Done,
    Interrupted,
    Timeout,
    Lost(Error),
    Failed(Failure),
}

pub async fn run(args: SubArgs) -> Result<(), Failure> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let topics: Vec<String> = args.topic.iter().chain(&args.positional).cloned().collect();
    if topics.is_empty() {
        return Err(Failure::usage("missing topic: give -t TOPIC or the topic as an argument")
            .with_hint("mqtt sub -t TOPIC [-v] (see mqtt help sub)"));
    }
    if args.no_retained && args.retained_only {
        return Err(Failure::usage("-R/--no-retained and --retained-only exclude each other"));
    }
    if args.out.json && args.out.format.is_some() {
        return Err(Failure::usage("--json and -F/--format exclude each other"));
    }
    for filter in args.filter_out.iter().chain(&args.unsubscribe) {
        mqttd_client::proto::topic::validate_topic_filter(filter)
            .map_err(|e| Failure::usage(format!("invalid topic filter {filter:?} for -T/-U: {e}")))?;
    }
    let connect = options::connect_options(&args.conn, Version::V311)?;
    let filters = filters(&args, &topics, connect.version)?;
    let properties = Properties {
        subscription_identifiers: args.subscription_identifier.into_iter().collect(),
        user_properties: pairs(&args.user_property),
        ..Properties::default()
    };

    let mut client = Client::connect(&connect).await?;
    // As mosquitto_sub -W: the timeout counts from the first connection.
    let deadline = args.timeout.map(|secs| Instant::now() + Duration::from_secs_f64(secs));
    let mut received = 0u64;
    loop {
        let end = match subscribe(&mut client, &filters, &properties, &args.unsubscribe).await {
            Ok(()) if args.exit_after_suback => End::Done,
            Ok(()) => receive(&mut client, &args, &mut sigint, deadline, &mut received).await,
            Err(end) => end,
        };
        match end {
            End::Done => return disconnect(client).await,
            End::Timeout => {
                disconnect(client).await?;
                return Err(Failure::new(fail::TIMEOUT, ""));
            }
            End::Interrupted => return interrupted(client, args.clean_exit).await,
            End::Failed(failure) => return Err(failure),
            End::Lost(error) if args.conn.reconnect_period == 0 || error.is_permanent() => return Err(error.into()),
            End::Lost(error) => match reconnect(&connect, &args, error, &mut sigint, deadline).await? {
                Some(c) => client = c,
                None => return Err(Failure::new(fail::TIMEOUT, "")),
            },
        }
    }
}

fn filters(
    args: &SubArgs,
    topics: &[String],
    version: ProtocolVersion,
) -> Result<Vec<(String, SubscriptionOptions)>, Failure> {
    options::require_v5(
        version,
        &[
            ("--no-local", args.no_local),
            ("--retain-as-published", args.retain_as_published),
            ("--retain-handling", args.retain_handling.is_some()),
            ("--subscription-identifier", args.subscription_identifier.is_some()),
            ("--user-property", !args.user_property.is_empty()),
        ],
    )?;
    let qos_for = |i: usize| -> Result<QoS, Failure> {
        match args.qos.len() {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(options::qos(args.qos[0])),
            n if n == topics.len() => Ok(options::qos(args.qos[i])),
            n => Err(Failure::usage(format!(
                "{n} -q/--qos values for {} topics: give one QoS for all, or one per -t",
                topics.len()
            ))),
        }
    };
    let retain_handling = match args.retain_handling {
        Some(1) => RetainHandling::SendIfNew,
        Some(2) => RetainHandling::DoNotSend,
        _ => RetainHandling::SendAtSubscribe,
    };
    let mut filters = Vec::with_capacity(topics.len());
    for (i, topic) in topics.iter().enumerate() {
        mqttd_client::proto::topic::validate_topic_filter(topic)
            .map_err(|e| Failure::usage(format!("invalid topic filter {topic:?}: {e}")))?;
        let options = SubscriptionOptions {
            qos: qos_for(i)?,
            no_local: args.no_local,
            retain_as_published: args.retain_as_published,
            retain_handling,
        };
        filters.push((topic.clone(), options));
    }
    Ok(filters)
}

/// Subscribes; a refused filter is reported on stderr, and if every filter is refused that is a failure.
async fn subscribe(
    client: &mut Client,
    filters: &[(String, SubscriptionOptions)],
    properties: &Properties,
    unsubscribe: &[String],
) -> Result<(), End> {
    let suback = match client.subscribe(filters.to_vec(), properties.clone()).await {
        Ok(s) => s,
        Err(e) if e.is_permanent() => return Err(End::Failed(e.into())),
        Err(e) => return Err(End::Lost(e)),
    };
    let mut refused = 0;
    for ((filter, _), &code) in filters.iter().zip(&suback.reasons) {
        if mqttd_client::is_failure(code) {
            refused += 1;
            eprintln!("mqtt: subscription to {filter:?} refused: {} ({code:#04x})", code_name(client.version(), code));
        }
    }
    if refused == filters.len() {
        return Err(End::Failed(Failure::new(fail::NOT_ACCEPTED, "every subscription was refused by the broker")));
    }
    if !unsubscribe.is_empty() {
        // mosquitto_sub -U: after the subscriptions, so a filter given to both ends unsubscribed.
        client.unsubscribe(unsubscribe.to_vec(), Properties::default()).await.map_err(End::Lost)?;
    }
    Ok(())
}

async fn receive(
    client: &mut Client,
    args: &SubArgs,
    sigint: &mut Signal,
    deadline: Option<Instant>,
    received: &mut u64,
) -> End {
    loop {
        let message = tokio::select! {
            biased;
            _ = sigint.recv() => return End::Interrupted,
            () = sleep_until(deadline) => return End::Timeout,
            message = client.recv() => message,
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => return End::Lost(e),
        };
        match on_message(client, args, &message).await {
            Ok(false) => continue,
            Ok(true) => {}
            Err(End::Done) => return End::Done,
            Err(end) => return end,
        }
        *received += 1;
        if args.count == Some(*received) {
            return End::Done;
        }
    }
}

/// Prints the message unless a filter says otherwise; `Ok(true)` when printed.
async fn on_message(client: &mut Client, args: &SubArgs, message: &Publish) -> Result<bool, End> {
    if args.remove_retained && message.retain && !message.payload.is_empty() {
        let clear = Message { topic: message.topic.clone(), retain: true, ..Message::default() };
        client.publish(clear).await.map_err(End::Lost)?;
    }
    if args.retained_only && !message.retain {
        return Err(End::Done);
    }
    if args.no_retained && message.retain {
        return Ok(false);
    }
    if args.filter_out.iter().any(|f| mqttd_client::proto::topic::matches(f, &message.topic)) {
        return Ok(false);
    }
    if let Err(failure) = print(&output::render(message, &args.out)) {
        failure.report();
        return Err(End::Done);
    }
    Ok(true)
}

/// Writes to stdout and flushes, so each message is visible at once (also with -N).
pub fn print(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::new(fail::ERROR, format!("cannot write to standard output: {e}")))
}

async fn reconnect(
    connect: &ConnectOptions,
    args: &SubArgs,
    error: Error,
    sigint: &mut Signal,
    deadline: Option<Instant>,
) -> Result<Option<Client>, Failure> {
    let period = Duration::from_millis(args.conn.reconnect_period);
    eprintln!("mqtt: connection lost: {error}; reconnecting every {} ms", args.conn.reconnect_period);
    tokio::select! {
        biased;
        _ = sigint.recv() => Err(Failure::new(fail::INTERRUPTED, "")),
        () = sleep_until(deadline) => Ok(None),
        client = mqttd_client::connect_retrying(connect, period, |_| {}) => {
            let client = client?;
            eprintln!("mqtt: reconnected");
            Ok(Some(client))
        }
    }
}

async fn disconnect(client: Client) -> Result<(), Failure> {
    client.disconnect(0, Properties::default()).await?;
    Ok(())
}

async fn interrupted(client: Client, clean_exit: bool) -> Result<(), Failure> {
    if clean_exit {
        // Best effort: the user asked to stop, so a failing DISCONNECT changes nothing.
        let _ = client.disconnect(0, Properties::default()).await;
    } else {
        client.abort();
    }
    Err(Failure::new(fail::INTERRUPTED, ""))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
