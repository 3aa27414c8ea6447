//! `mqtt publish` / `mqtt pub`.

use std::time::Duration;

use bytes::Bytes;
use mqttd_client::{Client, Message};
use tokio::io::AsyncBufReadExt;

use crate::args::{PubArgs, Version};
use crate::fail::Failure;
use crate::options;

pub async fn run(args: PubArgs) -> Result<(), Failure> {
    let mut positional = args.positional.iter().map(String::as_str);
    let topic = match args.topic.as_deref() {
        Some(t) => t.to_owned(),
        None => positional.next().map(str::to_owned).ok_or_else(missing_topic)?,
    };
    let positional_message = if args.msg.message.is_none() { positional.next() } else { None };
    if let Some(extra) = positional.next() {
        return Err(Failure::usage(format!(
            "unexpected argument {extra:?}: the topic and the message are already given"
        )));
    }
    if args.multiline && !args.msg.stdin {
        return Err(Failure::usage("-M/--multiline reads lines from standard input: add -s/--stdin"));
    }
    if args.multiline && args.repeat != 1 {
        return Err(Failure::usage("--repeat cannot be combined with -M/--multiline"));
    }
    if args.repeat == 0 {
        return Err(Failure::usage("--repeat must be at least 1"));
    }
    let connect = options::connect_options(&args.conn, Version::V311)?;
    let properties = options::publish_properties(&args.msg, args.response_topic.as_deref(), connect.version)?;
    mqttd_client::proto::topic::validate_topic_name(&topic)
        .map_err(|e| Failure::usage(format!("invalid topic {topic:?} for publishing: {e}")))?;
    let template =
        Message { topic, payload: Bytes::new(), qos: options::qos(args.msg.qos), retain: args.msg.retain, properties };
    // Read a whole-stdin or file payload before connecting, so a bad file fails without network traffic.
    let payload = if args.multiline { Bytes::new() } else { options::payload(&args.msg, positional_message)? };

    let mut client = Client::connect(&connect).await?;
    if args.multiline {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = lines.next_line().await? {
            // As mqtt.js: each line trimmed.
            let payload = Bytes::from(line.trim().to_owned());
            client.publish(Message { payload, ..template.clone() }).await?;
        }
    } else {
        for i in 0..args.repeat {
            if i > 0 && args.repeat_delay > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(args.repeat_delay)).await;
            }
            client.publish(Message { payload: payload.clone(), ..template.clone() }).await?;
        }
    }
    client.disconnect(0, Default::default()).await?;
    Ok(())
}

fn missing_topic() -> Failure {
    Failure::usage("missing topic: give -t TOPIC or the topic as the first argument")
        .with_hint("mqtt pub -t TOPIC -m MESSAGE (see mqtt help pub)")
}
