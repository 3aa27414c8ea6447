"""Round trip through mqttd with paho-mqtt: subscribe at QoS 0, 1 and 2, publish at each QoS, receive
every message once; MQTT 5 also checks user properties and a retained message.

Usage: paho_roundtrip.py PORT 3.1.1|5. Prints "ok" and exits 0 on success; exits 1 with the reason.
"""

import queue
import sys

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TIMEOUT = 10


def fail(why):
    print(f"FAIL: {why}", flush=True)
    sys.exit(1)


def client(name, version):
    proto = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=proto)
    c.connected = queue.Queue()
    c.on_connect = lambda cl, userdata, flags, rc, props: cl.connected.put(rc)
    return c


def connect(c, port):
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    rc = c.connected.get(timeout=TIMEOUT)
    if rc.is_failure:
        fail(f"{c._client_id!r} refused: {rc}")


def main():
    port, version = int(sys.argv[1]), sys.argv[2]
    messages = queue.Queue()
    subscribed = queue.Queue()
    sub = client(f"paho-sub-{version}", version)
    sub.on_message = lambda cl, userdata, msg: messages.put(msg)
    sub.on_subscribe = lambda cl, userdata, mid, codes, props: subscribed.put(codes)
    connect(sub, port)
    sub.subscribe([("paho/0", 0), ("paho/1", 1), ("paho/2", 2)])
    codes = [c.value for c in subscribed.get(timeout=TIMEOUT)]
    if codes != [0, 1, 2]:
        fail(f"SUBACK codes {codes}")

    pub = client(f"paho-pub-{version}", version)
    connect(pub, port)
    props = None
    if version == "5":
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("origin", "paho")]
        props.ContentType = "text/plain"
    for qos in (0, 1, 2):
        info = pub.publish(f"paho/{qos}", f"qos {qos}", qos=qos, properties=props)
        info.wait_for_publish(timeout=TIMEOUT)
    got = {}
    for _ in range(3):
        msg = messages.get(timeout=TIMEOUT)
        got[msg.topic] = msg
    for qos in (0, 1, 2):
        msg = got.get(f"paho/{qos}")
        if msg is None or msg.payload != f"qos {qos}".encode() or msg.qos != qos:
            fail(f"message at QoS {qos}: {msg and (msg.payload, msg.qos)}")
        if version == "5":
            user = getattr(msg.properties, "UserProperty", None)
            if user != [("origin", "paho")] or getattr(msg.properties, "ContentType", None) != "text/plain":
                fail(f"properties not forwarded: {msg.properties}")
    try:
        extra = messages.get(timeout=0.3)
        fail(f"duplicate delivery: {extra.topic}")
    except queue.Empty:
        pass

    pub.publish("paho/retained", "kept", qos=1, retain=True).wait_for_publish(timeout=TIMEOUT)
    sub.subscribe("paho/retained", 1)
    subscribed.get(timeout=TIMEOUT)
    msg = messages.get(timeout=TIMEOUT)
    if msg.topic != "paho/retained" or msg.payload != b"kept" or not msg.retain:
        fail(f"retained message: {msg.topic} {msg.payload} retain={msg.retain}")

    for c in (sub, pub):
        c.disconnect()
        c.loop_stop()
    print("ok", flush=True)


if __name__ == "__main__":
    main()
