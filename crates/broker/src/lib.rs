//! The mqttd broker: configuration, listeners, a task per connection while it has work (idle plain-TCP
//! connections park without one), sessions with wills and expiry, and `$SYS`. Broker logic that needs no I/O lives in `mqttd-core`; the wire format in `mqttd-proto`.
//!
//! Transports reach the core as plain byte streams ([`transport::Stream`]); every delivery passes one
//! authorization point ([`Broker::may_read_with`]), every publish and will another ([`Broker::may_write`]).

mod alias;
mod asleep;
mod at_accept;
mod backpressure;
pub mod bridge;
pub mod broker;
mod cluster;
pub mod config;
mod connect;
mod connection;
mod end;
mod handle;
pub mod http;
mod listener;
pub mod log;
pub mod observe;
mod outgoing;
mod park;
mod persist;
pub mod process;
pub mod security;
pub mod server;
pub mod session;
mod sessions;
pub mod settings;
pub mod shared;
pub mod store;
pub mod storm;
pub mod sys;
pub mod tls;
pub mod trace;
pub mod transport;
mod violation;
pub mod ws;

pub use broker::Broker;
pub use server::Server;
pub use settings::Settings;
