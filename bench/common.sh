# Shared by bench/compare and bench/idle-scale (sourced, after `root` is set): the binaries, free loopback
# ports, and waiting for a broker to listen.

# binaries NAME: sets `mqttd` and `bench`, building both (release) unless MQTTD_BIN and BENCH_BIN name them
# (e.g. mqttd from another checkout). NAME prefixes the message.
binaries() {
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
    if [ -z "${MQTTD_BIN:-}" ] || [ -z "${BENCH_BIN:-}" ]; then
        echo "$1: building mqttd and mqtt-bench (release) in $CARGO_TARGET_DIR" >&2
        (cd "$root" && cargo build --release --quiet -p mqttd-broker -p mqttd-bench)
    fi
    mqttd=${MQTTD_BIN:-$CARGO_TARGET_DIR/release/mqttd}
    bench=${BENCH_BIN:-$CARGO_TARGET_DIR/release/mqtt-bench}
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_port PORT: until something listens on 127.0.0.1:PORT (10 s at most; fails after that).
wait_port() {
    python3 - "$1" <<'PY'
import socket, sys, time
deadline = time.time() + 10
while time.time() < deadline:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
PY
}
