"""MQTT 5 wills with paho-mqtt against mqttd: a will with Will Delay Interval 1 s arrives about a second
after the connection drops; a client that reconnects to its session within the delay cancels its will.

Usage: paho_will_delay.py PORT. Prints "ok" and exits 0 on success; exits 1 with the reason.
"""

import queue
import socket
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TIMEOUT = 10


def fail(why):
    print(f"FAIL: {why}", flush=True)
    sys.exit(1)


def client(name, will_delay=None, clean_start=True):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.connected = queue.Queue()
    c.on_connect = lambda cl, userdata, flags, rc, props: cl.connected.put((rc, flags))
    c.clean_start = clean_start
    if will_delay is not None:
        will_props = Properties(PacketTypes.WILLMESSAGE)
        will_props.WillDelayInterval = will_delay
        c.will_set("paho/will", f"{name} is gone", qos=1, properties=will_props)
    return c


def connect(c, port, clean_start=True):
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 60
    c.connect("127.0.0.1", port, keepalive=30, clean_start=clean_start, properties=props)
    c.loop_start()
    rc, flags = c.connected.get(timeout=TIMEOUT)
    if rc.is_failure:
        fail(f"refused: {rc}")
    return flags


def drop(c):
    """Ends the connection without DISCONNECT, as a crash would."""
    sock = c.socket()
    c.loop_stop()  # first, so that paho does not reconnect on its own
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def main():
    port = int(sys.argv[1])
    wills = queue.Queue()
    subscribed = queue.Queue()
    watcher = client("paho-watcher")
    watcher.on_message = lambda cl, userdata, msg: wills.put((time.monotonic(), msg))
    watcher.on_subscribe = lambda cl, userdata, mid, codes, props: subscribed.put(codes)
    connect(watcher, port)
    watcher.subscribe("paho/will", 1)
    subscribed.get(timeout=TIMEOUT)

    delayed = client("paho-delayed", will_delay=1)
    connect(delayed, port)
    dropped = time.monotonic()
    drop(delayed)
    at, msg = wills.get(timeout=TIMEOUT)
    if msg.payload != b"paho-delayed is gone":
        fail(f"unexpected will {msg.payload}")
    if at - dropped < 0.9:
        fail(f"will published {at - dropped:.2f}s after the drop, before its 1 s delay")

    back = client("paho-back", will_delay=1)
    connect(back, port)
    drop(back)
    again = client("paho-back", clean_start=False)
    flags = connect(again, port, clean_start=False)
    if not flags.session_present:
        fail("session not present on reconnect")
    try:
        _, msg = wills.get(timeout=1.5)
        fail(f"will published although the client came back: {msg.payload}")
    except queue.Empty:
        pass

    for c in (again, watcher):
        c.disconnect()
        c.loop_stop()
    print("ok", flush=True)


if __name__ == "__main__":
    main()
