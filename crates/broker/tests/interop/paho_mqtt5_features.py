"""MQTT 5 features through mqttd with paho-mqtt: a shared subscription group of two members, one of them
with a subscription identifier, and a publisher that sets a topic alias of its own. (paho-mqtt 2 does not
resolve topic aliases it receives, so it asks for none; the broker's outgoing aliases are tested with raw
packets in tests/broker/mqtt5.rs.)

Usage: paho_mqtt5_features.py PORT. Prints "ok" and exits 0 on success; exits 1 with the reason.
"""

import queue
import sys

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TIMEOUT = 10
COUNT = 40


def fail(why):
    print(f"FAIL: {why}", flush=True)
    sys.exit(1)


def client(name):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.connected = queue.Queue()
    c.subscribed = queue.Queue()
    c.on_connect = lambda cl, userdata, flags, rc, props: cl.connected.put((rc, props))
    c.on_subscribe = lambda cl, userdata, mid, codes, props: cl.subscribed.put(codes)
    return c, None


def connect(c, props, port):
    c.connect("127.0.0.1", port, keepalive=30, properties=props)
    c.loop_start()
    rc, connack = c.connected.get(timeout=TIMEOUT)
    if rc.is_failure:
        fail(f"{c._client_id!r} refused: {rc}")
    return connack


def main():
    port = int(sys.argv[1])
    messages = queue.Queue()
    members = []
    for name, sub_id in (("paho-member-1", 7), ("paho-member-2", None)):
        c, props = client(name)
        c.on_message = lambda cl, userdata, msg, name=name: messages.put((name, msg))
        connack = connect(c, props, port)
        if getattr(connack, "SharedSubscriptionAvailable", 1) != 1:
            fail(f"CONNACK says shared subscriptions are not available: {connack}")
        sub_props = None
        if sub_id:
            sub_props = Properties(PacketTypes.SUBSCRIBE)
            sub_props.SubscriptionIdentifier = sub_id
        c.subscribe("$share/workers/p5/jobs", qos=1, properties=sub_props)
        codes = [code.value for code in c.subscribed.get(timeout=TIMEOUT)]
        if codes != [1]:
            fail(f"SUBACK for the shared subscription: {codes}")
        members.append(c)

    pub, props = client("paho-producer")
    connack = connect(pub, props, port)
    if getattr(connack, "TopicAliasMaximum", 0) < 1:
        fail(f"CONNACK has no Topic Alias Maximum: {connack}")
    alias = Properties(PacketTypes.PUBLISH)
    alias.TopicAlias = 1
    for i in range(COUNT):
        pub.publish("p5/jobs", str(i), qos=1, properties=alias).wait_for_publish(timeout=TIMEOUT)

    got = {}
    for _ in range(COUNT):
        name, msg = messages.get(timeout=TIMEOUT)
        if msg.topic != "p5/jobs":
            fail(f"{name} got topic {msg.topic!r}")
        ids = getattr(msg.properties, "SubscriptionIdentifier", None)
        if name == "paho-member-1" and ids != [7]:
            fail(f"member 1 message without its subscription identifier: {ids}")
        if name == "paho-member-2" and ids is not None:
            fail(f"member 2 message with a subscription identifier: {ids}")
        n = int(msg.payload)
        if n in got:
            fail(f"message {n} delivered twice ({got[n]} and {name})")
        got[n] = name
    if sorted(got) != list(range(COUNT)):
        fail(f"messages {sorted(got)}")
    per_member = {name: list(got.values()).count(name) for name in ("paho-member-1", "paho-member-2")}
    if min(per_member.values()) == 0:
        fail(f"one member got nothing: {per_member}")
    for c in members + [pub]:
        c.disconnect()
        c.loop_stop()
    print("ok", flush=True)


if __name__ == "__main__":
    main()
