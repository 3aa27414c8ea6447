//! The usage texts, written by hand so that they read like the mqtt.js CLI's (one option per line, short and
//! long names first) and list every option we accept. `mqtt help CMD` and `mqtt CMD -H` print the same text.

/// The TLS, WebSocket and will options, the same for `pub` and `sub`.
macro_rules! tls_and_will_options {
    () => {
        "  --key PATH              client private key file (TLS)
  --cert PATH             client certificate file (TLS)
  --ca PATH               CA certificate file to verify the broker (also --cafile)
  --insecure              do not verify the broker certificate
  --ws-path PATH          HTTP path of the WebSocket upgrade (ws, wss; default /mqtt)
  --will-topic TOPIC      topic of the will message
  --will-message BODY     payload of the will message (also --will-payload)
  --will-qos 0/1/2        QoS of the will message
  --will-retain           retain the will message
"
    };
}

/// The MQTT 5 CONNECT and will options, the same for `pub` and `sub`.
macro_rules! connect_and_will_options {
    () => {
        "  --connect-user-property K V     user property of CONNECT (repeatable)
  --will-delay SECS               will delay interval
  --will-message-expiry SECS      message expiry interval of the will
  --will-content-type TYPE        content type of the will
  --will-response-topic TOPIC     response topic of the will
  --will-correlation-data DATA    correlation data of the will
  --will-payload-format-indicator 0/1
  --will-user-property KEY VALUE  user property of the will (repeatable)
"
    };
}

pub const MAIN: &str = "\
mqtt: an MQTT command line client (compatible with the MQTT.js CLI). Commands:

  * publish, pub     publish a message to a broker
  * subscribe, sub   subscribe to topics and print the messages received
  * rr               send a request and print the response (MQTT 5)
  * bench            load a broker and measure it (mqtt bench --help)
  * version          print the version of this program
  * help             print help about a command

Run 'mqtt help [command]' or 'mqtt [command] -H' for the options of a command.

Exit status: 0 success, 1 error, 2 bad arguments, 3 cannot connect, 4 connection refused by the broker,
5 subscription or publication refused, 27 timeout (-W), 130 interrupted (SIGINT).
";

pub const PUBLISH: &str = concat!(
    "\
Usage: mqtt publish [opts] topic [message]
       mqtt pub [opts] -t TOPIC [-m MSG | -f FILE | -n | -s [-M]]

Options:

  -h/--hostname HOST      broker host (default localhost)
  -p/--port PORT          broker port (default 1883; 8883 for mqtts, 80 for ws, 443 for wss)
  -i/--client-id ID       client identifier (also --clientId, --id; default mqttjs_ and 8 hex digits)
  -q/--qos 0/1/2          quality of service of the message (default 0)
  -t/--topic TOPIC        topic to publish to (or the first argument)
  -m/--message MSG        message payload, any bytes (or the argument after the topic)
  -f/--file FILE          read the payload from FILE
  -n/--null-message       send an empty payload (clears a retained message with -r)
  -r/--retain             ask the broker to retain the message
  -s/--stdin              read the payload from standard input
  -M/--multiline          with -s: publish each line of standard input as one message
  --repeat N              publish the message N times (default 1)
  --repeat-delay SECS     wait SECS seconds between repeated messages
  -u/--username USER      user name
  -P/--password PASS      password
  -l/-C/--protocol PROTO  transport: mqtt, mqtts, ws or wss (default mqtt)
  -V/--protocol-version V MQTT version: 3.1, 3.1.1 or 5 (default 3.1.1)
  -k/--keepalive SEC      keep-alive interval in seconds (default 60)
  --no-clean              keep the session (clean session / clean start off)
  -x/--session-expiry S   session expiry interval in seconds (MQTT 5)
",
    tls_and_will_options!(),
    "  --connect-timeout SECS  give up connecting after SECS seconds (default 30)
  -d/--debug              print every packet sent and received (mosquitto_pub -d)

MQTT 5 options:

  --message-expiry SECS           message expiry interval
  --content-type TYPE             content type
  --response-topic TOPIC          response topic
  --correlation-data DATA         correlation data
  --payload-format-indicator 0/1  1: the payload is UTF-8 text
  --user-property KEY VALUE       user property of the message (repeatable)
",
    connect_and_will_options!(),
    "
  -H/--help               show this help
"
);

pub const SUBSCRIBE: &str = concat!(
    "\
Usage: mqtt subscribe [opts] [topic...]
       mqtt sub [opts] -t TOPIC [-t TOPIC...]

Prints the payload of each message on its own line, or the topic, a space and the payload with -v.
Stops on SIGINT without sending DISCONNECT, so the broker publishes the will (use --clean-exit to send
one). Reconnects when the connection is lost, every --reconnect-period milliseconds.

Options:

  -h/--hostname HOST      broker host (default localhost)
  -p/--port PORT          broker port (default 1883; 8883 for mqtts, 80 for ws, 443 for wss)
  -i/--clientId ID        client identifier (also --client-id, --id; default mqttjs_ and 8 hex digits)
  -q/--qos 0/1/2          QoS of the subscriptions; repeat to give each -t its own (default 0)
  -t/--topic TOPIC        topic filter to subscribe to (repeatable, or arguments)
  --no-clean              keep the session (clean session / clean start off)
  -k/--keepalive SEC      send a ping every SEC seconds (default 60)
  -u/--username USER      user name
  -P/--password PASS      password
  -l/-C/--protocol PROTO  transport: mqtt, mqtts, ws or wss (default mqtt)
  -V/--protocol-version V MQTT version: 3.1, 3.1.1 or 5 (default 3.1.1)
  -x/--session-expiry S   session expiry interval in seconds (MQTT 5)
",
    tls_and_will_options!(),
    "  -v/--verbose            print the topic before the message
  --count N               exit after N messages (mosquitto_sub -C; -C is --protocol here)
  -W/--timeout SECS       stop after SECS seconds in all, counted from the connection, with status 27
                          (as mosquitto_sub -W)
  -T/--filter-out FILTER  do not print messages on topics matching FILTER (repeatable)
  -U/--unsubscribe FILTER unsubscribe from FILTER after subscribing (repeatable)
  -E/--exit-after-suback  exit once the subscriptions are acknowledged
  -R/--no-retained        do not print retained messages
  --retained-only         print only retained messages; exit at the first message that is not
  --remove-retained       clear each retained message received (publish an empty retained message)
  -F/--format FORMAT      print with a format string (mosquitto_sub -F: %t %p %x %X %l %q %r %m %I %U
                          %j %C %D %E %F %P %R %S %%, \\n \\t \\\\)
  --json                  print one JSON object per message (payload as text, or payload_base64)
  -N/--no-newline         do not print a newline after each message
  --clean-exit            send DISCONNECT when stopped by SIGINT (the broker then drops the will)
  --reconnect-period MS   milliseconds between reconnect attempts, 0 to exit instead (default 1000)
  --connect-timeout SECS  give up connecting after SECS seconds (default 30)
  -d/--debug              print every packet sent and received (mosquitto_sub -d)

MQTT 5 options:

  --no-local                      do not receive our own messages
  --retain-as-published           keep the retain flag as published
  --retain-handling 0/1/2         0 send retained, 1 only for new subscriptions, 2 never
  --subscription-identifier N     subscription identifier
  --user-property KEY VALUE       user property of SUBSCRIBE (repeatable)
",
    connect_and_will_options!(),
    "
  -H/--help               show this help
"
);

pub const RR: &str = "\
Usage: mqtt rr [opts] -t TOPIC -e RESPONSE_TOPIC [-m MSG | -f FILE | -n | -s]

Request / response (MQTT 5, like mosquitto_rr): subscribes to RESPONSE_TOPIC, publishes the request to
TOPIC with that response topic and correlation data, prints the first response and exits.

Options:

  -t/--topic TOPIC        topic of the request
  -e/--response-topic T   topic the response is expected on
  -m/--message MSG        request payload
  -f/--file FILE          read the request payload from FILE
  -n/--null-message       send an empty request payload
  -s/--stdin              read the request payload from standard input
  -q/--qos 0/1/2          QoS of the request and of the subscription (default 0)
  -r/--retain             retain the request
  -W/--timeout SECS       exit with status 27 if no response arrives within SECS seconds
  -v/--verbose            print the topic before the response
  -F/--format FORMAT      print with a format string (as mqtt sub -F)
  --json                  print the response as a JSON object
  -N/--no-newline         do not print a newline after the response
  --correlation-data DATA correlation data (default: a random value)
  --message-expiry, --content-type, --payload-format-indicator, --user-property: as mqtt pub

Connection options (-h, -p, -i, -u, -P, -l/-C, -k, --no-clean, -x, --will-*, TLS) are those of mqtt pub;
-V defaults to 5 and must be 5.

  -H/--help               show this help
";
