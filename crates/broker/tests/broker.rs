//! The broker's integration tests over real TCP, grouped by area like Mosquitto's `test/broker` families.
//! Every test starts its own in-process broker on 127.0.0.1 port 0 and talks raw MQTT to it with
//! [`mqttd_testkit::Peer`]. Waits are bounded; nothing sleeps to synchronise.

#[path = "broker/common.rs"]
mod common;

#[path = "broker/connect.rs"]
mod connect;
#[path = "broker/flows.rs"]
mod flows;
#[path = "broker/hostile.rs"]
mod hostile;
#[path = "broker/keepalive.rs"]
mod keepalive;
#[path = "broker/limits.rs"]
mod limits;
#[path = "broker/malformed.rs"]
mod malformed;
#[path = "broker/mqtt5.rs"]
mod mqtt5;
#[path = "broker/multi_thread.rs"]
mod multi_thread;
#[path = "broker/park.rs"]
mod park;
#[path = "broker/publish.rs"]
mod publish;
#[path = "broker/retain.rs"]
mod retain;
#[path = "broker/session.rs"]
mod session;
#[path = "broker/shutdown.rs"]
mod shutdown;
#[path = "broker/subscribe.rs"]
mod subscribe;
#[path = "broker/sys.rs"]
mod sys;
#[path = "broker/takeover.rs"]
mod takeover;
#[path = "broker/will.rs"]
mod will;
