//! The real `mqttd` binary with real config files: users and ACLs (issue 4), and running it as a
//! Mosquitto admin would (issue 16: per-listener directives, logging, pid file, user, daemon mode, -p,
//! SIGHUP, every Mosquitto directive, TLS with the mosquitto-tls recipe, the packet trace of -v).

#[path = "process/common.rs"]
mod common;

#[path = "process/auth.rs"]
mod auth;
#[path = "process/bridge.rs"]
mod bridge;
#[path = "process/clients.rs"]
mod clients;
#[path = "process/cluster.rs"]
mod cluster;
#[path = "process/cluster_failover.rs"]
mod cluster_failover;
#[path = "process/full_disk.rs"]
mod full_disk;
#[path = "process/listeners.rs"]
mod listeners;
#[path = "process/mosquitto_import.rs"]
mod mosquitto_import;
#[path = "process/ops.rs"]
mod ops;
#[path = "process/persistence.rs"]
mod persistence;
#[path = "process/tls.rs"]
mod tls;
#[path = "process/trace.rs"]
mod trace;
