//! `mqtt rr`: publish a request with a response topic and correlation data, print the first response.

use std::time::Duration;

use bytes::Bytes;
use mqttd_client::proto::{Properties, SubscriptionOptions};
use mqttd_client::{random_u64, Client, Message};

use crate::args::{RrArgs, Version};
use crate::fail::{self, Failure};
use crate::{options, output};

pub async fn run(args: RrArgs) -> Result<(), Failure> {
    let connect = options::connect_options(&args.conn, Version::V5)?;
    if !connect.version.is_v5() {
        return Err(Failure::usage("mqtt rr needs MQTT 5 (response topic and correlation data): use -V 5"));
    }
    let topic = args.topic.clone().ok_or_else(|| Failure::usage("missing request topic: give -t TOPIC"))?;
    let response_topic =
        args.response_topic.clone().ok_or_else(|| Failure::usage("missing response topic: give -e TOPIC"))?;
    let mut properties = options::publish_properties(&args.msg, Some(&response_topic), connect.version)?;
    let correlation =
        properties.correlation_data.get_or_insert_with(|| Bytes::from(format!("{:016x}", random_u64()))).clone();
    let payload = options::payload(&args.msg, None)?;
    let qos = options::qos(args.msg.qos);

    let exchange = async {
        let mut client = Client::connect(&connect).await?;
        let subscription = SubscriptionOptions { qos, ..SubscriptionOptions::default() };
        let suback = client.subscribe(vec![(response_topic.clone(), subscription)], Properties::default()).await?;
        if let Some(&code) = suback.reasons.first().filter(|c| **c >= 0x80) {
            let name = mqttd_client::code_name(connect.version, code);
            return Err(Failure::new(
                fail::NOT_ACCEPTED,
                format!("subscription to {response_topic:?} refused: {name}"),
            ));
        }
        client.publish(Message { topic, payload, qos, retain: args.msg.retain, properties }).await?;
        loop {
            let message = client.recv().await?;
            let matches = matches!(&message.properties.correlation_data, Some(c) if *c == correlation)
                || message.properties.correlation_data.is_none();
            if mqttd_client::proto::topic::matches(&response_topic, &message.topic) && matches {
                client.disconnect(0, Properties::default()).await?;
                return Ok(message);
            }
        }
    };
    let message = match args.timeout {
        Some(secs) => match tokio::time::timeout(Duration::from_secs_f64(secs), exchange).await {
            Ok(result) => result?,
            Err(_) => return Err(Failure::new(fail::TIMEOUT, format!("no response within {secs} s"))),
        },
        None => exchange.await?,
    };
    crate::subscribe::print(&output::render(&message, &args.out))
}
