//! How a received message is printed: mqtt.js style (payload, or `topic payload` with -v), mosquitto_sub
//! `-F` format strings, or one JSON object per line.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use mqttd_client::proto::{Properties, Publish};
use serde_json::{json, Map, Value};

use crate::args::OutputArgs;

/// The bytes to print for `message`, newline included unless `-N`.
pub fn render(message: &Publish, out: &OutputArgs) -> Vec<u8> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut line = if out.json {
        json_line(message, now).into_bytes()
    } else if let Some(format) = &out.format {
        format_message(format, message, now)
    } else {
        // As mqtt.js: `console.log(payload.toString())`, invalid UTF-8 replaced by U+FFFD.
        let payload = String::from_utf8_lossy(&message.payload);
        if out.verbose {
            format!("{} {payload}", message.topic).into_bytes()
        } else {
            payload.into_owned().into_bytes()
        }
    };
    if !out.no_newline {
        line.push(b'\n');
    }
    line
}

/// One JSON object: `tst`, `topic`, `qos`, `retain`, `payload` (UTF-8 text) or `payload_base64`, and the
/// MQTT 5 `properties` that are set.
pub fn json_line(message: &Publish, now: std::time::Duration) -> String {
    let mut object = Map::new();
    object.insert("tst".into(), Value::String(iso8601(now, true)));
    object.insert("topic".into(), Value::String(message.topic.clone()));
    object.insert("qos".into(), json!(message.qos as u8));
    object.insert("retain".into(), Value::Bool(message.retain));
    match std::str::from_utf8(&message.payload) {
        Ok(text) => object.insert("payload".into(), Value::String(text.to_owned())),
        Err(_) => object.insert("payload_base64".into(), Value::String(base64(&message.payload))),
    };
    let properties = properties_json(&message.properties);
    if !properties.is_empty() {
        object.insert("properties".into(), Value::Object(properties));
    }
    Value::Object(object).to_string()
}

fn base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn properties_json(p: &Properties) -> Map<String, Value> {
    let mut map = Map::new();
    if let Some(v) = p.payload_format_indicator {
        map.insert("payload_format_indicator".into(), json!(v));
    }
    if let Some(v) = p.message_expiry_interval {
        map.insert("message_expiry_interval".into(), json!(v));
    }
    if let Some(v) = &p.content_type {
        map.insert("content_type".into(), json!(v));
    }
    if let Some(v) = &p.response_topic {
        map.insert("response_topic".into(), json!(v));
    }
    if let Some(v) = &p.correlation_data {
        match std::str::from_utf8(v) {
            Ok(text) => map.insert("correlation_data".into(), json!(text)),
            Err(_) => map.insert("correlation_data_base64".into(), json!(base64(v))),
        };
    }
    if !p.subscription_identifiers.is_empty() {
        map.insert("subscription_identifiers".into(), json!(p.subscription_identifiers));
    }
    if let Some(v) = p.topic_alias {
        map.insert("topic_alias".into(), json!(v));
    }
    if !p.user_properties.is_empty() {
        let pairs: Vec<Value> = p.user_properties.iter().map(|(k, v)| json!([k, v])).collect();
        map.insert("user_properties".into(), Value::Array(pairs));
    }
    map
}

/// Expands a mosquitto_sub `-F` format string: `%` message fields, `@` time fields, `\` escapes.
/// Field widths are not supported; an unknown sequence is printed as it is.
pub fn format_message(format: &str, m: &Publish, now: std::time::Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some(spec) => field(spec, m, now, &mut out),
                None => out.push(b'%'),
            },
            '@' => match chars.next() {
                Some(spec) => time_field(spec, now, &mut out),
                None => out.push(b'@'),
            },
            '\\' => match chars.next() {
                Some(spec) => escape(spec, &mut out),
                None => out.push(b'\\'),
            },
            other => push_str(&mut out, other.encode_utf8(&mut [0; 4])),
        }
    }
    out
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

fn field(spec: char, m: &Publish, now: std::time::Duration, out: &mut Vec<u8>) {
    let p = &m.properties;
    let opt = |v: Option<String>| v.unwrap_or_default();
    match spec {
        '%' => out.push(b'%'),
        't' => push_str(out, &m.topic),
        'p' => out.extend_from_slice(&m.payload),
        'x' => push_str(out, &hex(&m.payload, false)),
        'X' => push_str(out, &hex(&m.payload, true)),
        'l' => push_str(out, &m.payload.len().to_string()),
        'q' => push_str(out, &(m.qos as u8).to_string()),
        'r' => push_str(out, if m.retain { "1" } else { "0" }),
        'm' => push_str(out, &m.packet_id.map_or(0, |id| id.get()).to_string()),
        'I' => push_str(out, &iso8601(now, false)),
        'U' => push_str(out, &format!("{}.{:09}", now.as_secs(), now.subsec_nanos())),
        'j' => push_str(out, &json_line(m, now)),
        'A' => push_str(out, &opt(p.topic_alias.map(|v| v.to_string()))),
        'C' => push_str(out, &opt(p.content_type.clone())),
        'D' => out.extend_from_slice(p.correlation_data.as_deref().unwrap_or_default()),
        'E' => push_str(out, &opt(p.message_expiry_interval.map(|v| v.to_string()))),
        'F' => push_str(out, &opt(p.payload_format_indicator.map(|v| v.to_string()))),
        'R' => push_str(out, &opt(p.response_topic.clone())),
        'S' => {
            let ids: Vec<String> = p.subscription_identifiers.iter().map(u32::to_string).collect();
            push_str(out, &ids.join(","));
        }
        'P' => {
            let props: Vec<String> = p.user_properties.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            push_str(out, &props.join(" "));
        }
        other => {
            out.push(b'%');
            push_str(out, other.encode_utf8(&mut [0; 4]));
        }
    }
}

fn escape(spec: char, out: &mut Vec<u8>) {
    let byte = match spec {
        '\\' => b'\\',
        '0' => 0,
        'a' => 7,
        'e' => 0x1B,
        'n' => b'\n',
        'r' => b'\r',
        't' => b'\t',
        'v' => 0x0B,
        other => {
            out.push(b'\\');
            push_str(out, other.encode_utf8(&mut [0; 4]));
            return;
        }
    };
    out.push(byte);
}

/// A subset of strftime, in UTC: @Y @m @d @H @M @S @N (nanoseconds) @s (epoch seconds) @F @T @@.
fn time_field(spec: char, now: std::time::Duration, out: &mut Vec<u8>) {
    let (year, month, day, h, min, s) = civil(now.as_secs());
    let text = match spec {
        'Y' => year.to_string(),
        'm' => format!("{month:02}"),
        'd' => format!("{day:02}"),
        'H' => format!("{h:02}"),
        'M' => format!("{min:02}"),
        'S' => format!("{s:02}"),
        'N' => format!("{:09}", now.subsec_nanos()),
        's' => now.as_secs().to_string(),
        'F' => format!("{year}-{month:02}-{day:02}"),
        'T' => format!("{h:02}:{min:02}:{s:02}"),
        '@' => "@".into(),
        other => format!("@{other}"),
    };
    push_str(out, &text);
}

fn hex(data: &[u8], upper: bool) -> String {
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        let _ = if upper { write!(s, "{b:02X}") } else { write!(s, "{b:02x}") };
    }
    s
}

/// `2016-08-10T09:47:38+0000`, with microseconds when `micros` (as mosquitto_sub's JSON `tst`). UTC.
pub fn iso8601(now: std::time::Duration, micros: bool) -> String {
    let (y, mo, d, h, mi, s) = civil(now.as_secs());
    if micros {
        format!("{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:06}+0000", now.subsec_micros())
    } else {
        format!("{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+0000")
    }
}

/// Seconds since the Unix epoch to (year, month, day, hour, minute, second) in UTC, by the days-to-civil
/// algorithm of the proleptic Gregorian calendar.
fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, (rem / 3600) as u32, (rem % 3600 / 60) as u32, (rem % 60) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mqttd_client::proto::{PacketId, QoS};
    use std::time::Duration;

    fn message() -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "a/b".into(),
            packet_id: PacketId::new(7),
            properties: Properties {
                content_type: Some("text/plain".into()),
                user_properties: vec![("k".into(), "v".into())],
                ..Properties::default()
            },
            payload: Bytes::from_static(b"hi\xff"),
        }
    }

    #[test]
    fn format_strings_expand_like_mosquitto_sub() {
        let at = Duration::from_secs(1_470_822_458);
        let out = format_message(r"%t %q %r %m %l %x %X %C %P %% %I\t@Y-@m-@d@@", &message(), at);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "a/b 1 1 7 3 6869ff 6869FF text/plain k:v % 2016-08-10T09:47:38+0000\t2016-08-10@"
        );
    }

    #[test]
    fn json_uses_base64_for_payloads_that_are_not_utf8() {
        let line = json_line(&message(), Duration::from_secs(0));
        let v: Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v["payload_base64"], "aGn/");
        assert_eq!(v["tst"], "1970-01-01T00:00:00.000000+0000");
        assert_eq!(v["properties"]["user_properties"][0][1], "v");
        assert_eq!(v["retain"], true);
    }

    #[test]
    fn civil_dates_cross_leap_years() {
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
    }
}
