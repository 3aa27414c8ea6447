//! The HTTP listener (`protocol http`, issue 17) over real HTTP against the real broker: `/metrics`
//! parsed as Prometheus text, every admin API route with good and bad input, access control, and the
//! dashboard in headless Chromium.

#[path = "http/common.rs"]
mod common;

#[path = "http/access.rs"]
mod access;
#[path = "http/api.rs"]
mod api;
#[path = "http/dashboard.rs"]
mod dashboard;
#[path = "http/metrics.rs"]
mod metrics;
