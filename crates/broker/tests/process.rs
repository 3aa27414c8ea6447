//! The real `mqttd` binary with real config files: users and ACLs (issue 4), and running it as a
//! Mosquitto admin would (issue 16: per-listener directives, logging, pid file, user, daemon mode, -p,
//! SIGHUP, every Mosquitto directive).

#[path = "process/common.rs"]
mod common;

#[path = "process/auth.rs"]
mod auth;
#[path = "process/bridge.rs"]
mod bridge;
#[path = "process/listeners.rs"]
mod listeners;
#[path = "process/mosquitto_import.rs"]
mod mosquitto_import;
#[path = "process/ops.rs"]
mod ops;
#[path = "process/persistence.rs"]
mod persistence;
