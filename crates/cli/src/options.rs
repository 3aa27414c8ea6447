//! From command-line arguments to [`ConnectOptions`] and message properties, with the checks that belong
//! to arguments (MQTT 5 options need `-V 5`, will options need `--will-topic`, ...).

use std::time::Duration;

use bytes::Bytes;
use mqttd_client::proto::{topic, Properties, ProtocolVersion, QoS, Will};
use mqttd_client::{random_client_id, ConnectOptions, TlsOptions, TransportKind};

use crate::args::{pairs, ConnArgs, MessageArgs, Protocol, Version};
use crate::fail::Failure;

pub fn qos(value: u8) -> QoS {
    QoS::from_u8(value).unwrap_or_default()
}

/// Fails unless the protocol version is 5, naming the first MQTT 5 option given.
pub fn require_v5(version: ProtocolVersion, used: &[(&str, bool)]) -> Result<(), Failure> {
    if version.is_v5() {
        return Ok(());
    }
    match used.iter().find(|(_, given)| *given) {
        Some((flag, _)) => {
            Err(Failure::usage(format!("{flag} is an MQTT 5 option, but the protocol version is {version}"))
                .with_hint("add -V 5"))
        }
        None => Ok(()),
    }
}

pub fn connect_options(args: &ConnArgs, default_version: Version) -> Result<ConnectOptions, Failure> {
    let protocol = match args.protocol {
        Some(p) => p,
        // As mqtt.js: a client key and certificate without -l mean mqtts.
        None if args.key.is_some() && args.cert.is_some() => Protocol::Mqtts,
        None => Protocol::Mqtt,
    };
    let version = match args.protocol_version.unwrap_or(default_version) {
        Version::V31 => ProtocolVersion::V3_1,
        Version::V311 => ProtocolVersion::V3_1_1,
        Version::V5 => ProtocolVersion::V5,
    };
    let mut options = ConnectOptions::new(args.host.clone(), args.port.unwrap_or(protocol.default_port()));
    options.transport = match protocol {
        Protocol::Mqtt => TransportKind::Tcp,
        Protocol::Mqtts => TransportKind::Tls,
        Protocol::Ws => TransportKind::WebSocket,
        Protocol::Wss => TransportKind::SecureWebSocket,
    };
    options.tls = TlsOptions {
        ca_file: args.ca.clone(),
        cert_file: args.cert.clone(),
        key_file: args.key.clone(),
        insecure: args.insecure,
        ..TlsOptions::default()
    };
    options.ws_path = args.ws_path.clone();
    options.version = version;
    options.client_id = args.client_id.clone().unwrap_or_else(|| random_client_id("mqttjs_"));
    if version == ProtocolVersion::V3_1 && options.client_id.len() > 23 {
        return Err(Failure::usage(format!(
            "client id {:?} is longer than the 23 bytes MQTT 3.1 allows",
            options.client_id
        )));
    }
    options.clean_start = !args.no_clean;
    options.keep_alive = args.keepalive;
    options.connect_timeout = Duration::from_secs_f64(args.connect_timeout.max(0.001));
    if args.password.is_some() && args.username.is_none() && !version.is_v5() {
        return Err(Failure::usage("-P/--password needs -u/--username before MQTT 5"));
    }
    options.username = args.username.clone();
    options.password = args.password.clone().map(Bytes::from);
    require_v5(
        version,
        &[
            ("-x/--session-expiry", args.session_expiry.is_some()),
            ("--connect-user-property", !args.connect_user_property.is_empty()),
        ],
    )?;
    options.properties.session_expiry_interval = args.session_expiry;
    options.properties.user_properties = pairs(&args.connect_user_property);
    options.will = will(args, version)?;
    if args.debug {
        options.trace = Some(crate::debug::trace(options.client_id.clone()));
    }
    Ok(options)
}

fn will(args: &ConnArgs, version: ProtocolVersion) -> Result<Option<Will>, Failure> {
    let properties = Properties {
        will_delay_interval: args.will_delay,
        message_expiry_interval: args.will_message_expiry,
        content_type: args.will_content_type.clone(),
        response_topic: args.will_response_topic.clone(),
        correlation_data: args.will_correlation_data.clone().map(Bytes::from),
        payload_format_indicator: args.will_payload_format_indicator,
        user_properties: pairs(&args.will_user_property),
        ..Properties::default()
    };
    let Some(topic_name) = &args.will_topic else {
        let given = args.will_message.is_some() || args.will_qos != 0 || args.will_retain || !properties.is_empty();
        if given {
            return Err(Failure::usage("will options were given without --will-topic"));
        }
        return Ok(None);
    };
    topic::validate_topic_name(topic_name)
        .map_err(|e| Failure::usage(format!("invalid --will-topic {topic_name:?}: {e}")))?;
    if !properties.is_empty() && !version.is_v5() {
        return Err(Failure::usage(format!(
            "will properties (--will-delay, --will-content-type, ...) are MQTT 5 options, but the protocol version is {version}"
        ))
        .with_hint("add -V 5"));
    }
    Ok(Some(Will {
        topic: topic_name.clone(),
        payload: Bytes::from(args.will_message.clone().unwrap_or_default()),
        qos: qos(args.will_qos),
        retain: args.will_retain,
        properties,
    }))
}

/// PUBLISH properties from the message options (and a response topic, for `pub` and `rr`).
pub fn publish_properties(
    msg: &MessageArgs,
    response_topic: Option<&str>,
    version: ProtocolVersion,
) -> Result<Properties, Failure> {
    require_v5(
        version,
        &[
            ("--message-expiry", msg.message_expiry.is_some()),
            ("--content-type", msg.content_type.is_some()),
            ("--response-topic", response_topic.is_some()),
            ("--correlation-data", msg.correlation_data.is_some()),
            ("--payload-format-indicator", msg.payload_format_indicator.is_some()),
            ("--user-property", !msg.user_property.is_empty()),
        ],
    )?;
    if let Some(t) = response_topic {
        topic::validate_topic_name(t).map_err(|e| Failure::usage(format!("invalid response topic {t:?}: {e}")))?;
    }
    Ok(Properties {
        message_expiry_interval: msg.message_expiry,
        content_type: msg.content_type.clone(),
        response_topic: response_topic.map(str::to_owned),
        correlation_data: msg.correlation_data.clone().map(Bytes::from),
        payload_format_indicator: msg.payload_format_indicator,
        user_properties: utf8_pairs(&msg.user_property)?,
        ..Properties::default()
    })
}

/// `--user-property` pairs. Arguments that are not UTF-8 reach us (a shell passes any bytes), but MQTT
/// strings must be UTF-8 [MQTT-1.5.4-1] (a broker closes the connection on one that is not), so they are
/// refused here with their bytes shown, as mosquitto_pub refuses them (`MOSQ_ERR_MALFORMED_UTF8`).
fn utf8_pairs(values: &[std::ffi::OsString]) -> Result<Vec<(String, String)>, Failure> {
    let text = values
        .iter()
        .map(|v| {
            v.to_str().map(str::to_owned).ok_or_else(|| {
                Failure::usage(format!(
                    "--user-property {:?} is not UTF-8: MQTT user properties are UTF-8 strings [MQTT-1.5.4-1] \
                     (a payload may be any bytes: give them with -m or -f)",
                    v
                ))
            })
        })
        .collect::<Result<Vec<String>, Failure>>()?;
    Ok(pairs(&text))
}

/// The payload from exactly one of `-m` (or `positional`), `-f`, `-n` or `-s` (read whole); empty if none.
pub fn payload(msg: &MessageArgs, positional: Option<&str>) -> Result<Bytes, Failure> {
    use std::os::unix::ffi::OsStrExt;
    let message = msg.message.as_deref().map(OsStrExt::as_bytes).or(positional.map(str::as_bytes));
    let sources = [message.is_some(), msg.file.is_some(), msg.null_message, msg.stdin];
    if sources.iter().filter(|s| **s).count() > 1 {
        return Err(Failure::usage(
            "give only one of -m/--message (or a message argument), -f/--file, -n/--null-message and -s/--stdin",
        ));
    }
    if let Some(m) = message {
        return Ok(Bytes::copy_from_slice(m));
    }
    if let Some(path) = &msg.file {
        return std::fs::read(path)
            .map(Bytes::from)
            .map_err(|e| Failure::usage(format!("cannot read -f/--file {}: {e}", path.display())));
    }
    if msg.stdin {
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut data)
            .map_err(|e| Failure::new(crate::fail::ERROR, format!("cannot read standard input: {e}")))?;
        return Ok(Bytes::from(data));
    }
    Ok(Bytes::new())
}
