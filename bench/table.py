#!/usr/bin/env python3
"""Prints the bench/compare table: the median of each figure per broker and the ratio mqttd/Mosquitto.

usage: table.py RESULTS_DIR BROKER...   (RESULTS_DIR holds NAME.BROKER.ROUND.json and `scenarios`)
"""
import glob
import json
import os
import statistics
import sys

LABELS = {
    "receive_rate": "msg/s delivered",
    "lost": "lost",
    "duplicates": "duplicates",
    "broker_peak_rss_kib": "broker peak RSS MiB",
    "bench_cpu_percent": "generator CPU %",
    "broker_cpu_percent": "broker CPU %",
    "p50": "latency p50 us",
    "p99": "latency p99 us",
    "p99_9": "latency p99.9 us",
    "connect_rate": "CONNACK/s",
    "memory_per_connection": "broker B/conn",
    "failed_connections": "failed conns",
}


def figure(report, key):
    if key in ("p50", "p99", "p99_9"):
        return (report.get("latency_us") or {}).get(key)
    value = report.get(key)
    if key == "broker_peak_rss_kib" and value is not None:
        return value / 1024
    return value


def fmt(value):
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def main():
    out, brokers = sys.argv[1], sys.argv[2:]
    with open(os.path.join(out, "scenarios")) as f:
        scenarios = [line.strip().split("|") for line in f if line.strip()]
    head = ["scenario", "figure"] + brokers + ["mqttd/mosquitto"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, _args, keys in scenarios:
        reports = {}
        for b in brokers:
            runs = []
            for path in sorted(glob.glob(os.path.join(out, f"{name}.{b}.*.json"))):
                try:
                    with open(path) as f:
                        runs.append(json.loads(f.read()))
                except (OSError, ValueError):
                    pass
            reports[b] = runs
        if not any(reports.values()):
            continue
        expanded = []
        for key in keys.split():
            expanded += ["bench_cpu_percent", "broker_cpu_percent"] if key == "cpu" else [key]
        for key in expanded:
            medians = {}
            for b in brokers:
                values = [v for v in (figure(r, key) for r in reports[b]) if v is not None]
                medians[b] = statistics.median(values) if values else None
            a, m = medians.get("mqttd"), medians.get("mosquitto")
            ratio = f"{a / m:.2f}" if a is not None and m else "-"
            row = [name, LABELS.get(key, key)] + [fmt(medians[b]) for b in brokers] + [ratio]
            print("| " + " | ".join(row) + " |")
    print(f"\nmedian over rounds of each figure; raw results in {out}")

if __name__ == "__main__":
    main()
