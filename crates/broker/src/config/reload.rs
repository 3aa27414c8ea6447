//! What a SIGHUP can apply: the directives whose new values need a restart, for the log line that says
//! so (none is ignored silently).

use super::{Config, ListenerConfig};

impl Config {
    /// Directives changed between `self` (running) and `new` (re-read on SIGHUP) that the running broker
    /// cannot apply: first those Mosquitto does not reload either (listeners, `user`, `pid_file`), then
    /// those mqttd reads only at startup. Logging and security directives are not listed: SIGHUP applies
    /// them.
    pub fn changes_needing_restart(&self, new: &Config) -> (Vec<&'static str>, Vec<&'static str>) {
        let mut not_reloaded = Vec::new();
        let listeners = |c: &Config| c.listeners.iter().map(without_location).collect::<Vec<_>>();
        if listeners(self) != listeners(new) {
            not_reloaded.push("listener settings (listener, port, bind_address, max_qos, max_connections, mount_point, protocol, socket_domain, http_dir, TLS options)");
        }
        if self.max_qos != new.max_qos {
            not_reloaded.push("max_qos");
        }
        if self.max_connections != new.max_connections {
            not_reloaded.push("max_connections");
        }
        if self.user != new.user {
            not_reloaded.push("user");
        }
        if self.pid_file != new.pid_file {
            not_reloaded.push("pid_file");
        }
        if self.cluster != new.cluster {
            not_reloaded.push("cluster settings (cluster_*)");
        }
        // As Mosquitto: bridges keep running unchanged across a reload.
        if self.bridges != new.bridges {
            not_reloaded.push("bridges (connection sections)");
        }
        let mut at_restart = Vec::new();
        macro_rules! compare {
            ($($field:ident),*) => {
                $(if self.$field != new.$field {
                    at_restart.push(stringify!($field));
                })*
            };
        }
        compare!(
            allow_zero_length_clientid,
            auto_id_prefix,
            max_queued_messages,
            max_queued_bytes,
            queue_qos0_messages,
            max_inflight_messages,
            max_inflight_bytes,
            message_size_limit,
            max_packet_size,
            max_keepalive,
            persistent_client_expiration,
            retain_available,
            upgrade_outgoing_qos,
            check_retain_source,
            set_tcp_nodelay,
            sys_interval,
            threads,
            park_idle_after,
            persistence,
            persistence_file,
            persistence_location,
            autosave_interval,
            autosave_on_changes
        );
        (not_reloaded, at_restart)
    }
}

/// A listener's settings without where they were written (moving lines is not a change).
fn without_location(listener: &ListenerConfig) -> ListenerConfig {
    let mut listener = listener.clone();
    listener.defined_at.line = 0;
    // Reloaded with the security settings.
    listener.allow_anonymous = None;
    listener.password_file = None;
    listener.acl_file = None;
    listener
}
