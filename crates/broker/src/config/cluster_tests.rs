//! The `cluster_*` directives: each one parsed into `ClusterConfig`, each bad value refused with file,
//! line and what is accepted, and no cluster without `cluster_nats_url`.

use std::path::Path;

use super::{ClusterConfig, Config, ConfigError};

const ORIGIN: &str = "/etc/mqttd/mqttd.conf";

fn parse(text: &str) -> ClusterConfig {
    Config::parse(text, Path::new(ORIGIN)).unwrap_or_else(|e| panic!("{text:?}: {e}")).cluster
}

fn error(text: &str) -> ConfigError {
    Config::parse(text, Path::new(ORIGIN)).err().unwrap_or_else(|| panic!("{text:?} is accepted"))
}

#[test]
fn without_cluster_nats_url_the_node_is_a_single_broker() {
    assert_eq!(parse(""), ClusterConfig::default());
    assert!(!parse("cluster_name east\ncluster_replicas 3\n").enabled());
}

#[test]
fn every_cluster_directive_changes_the_cluster_config() {
    let samples = [
        "cluster_name east",
        "cluster_nats_url nats://127.0.0.1:4222",
        "cluster_replicas 3",
        "cluster_nats_credentials /etc/mqttd/nats.creds",
        "cluster_nats_username mqttd",
        "cluster_nats_password secret",
        "cluster_nats_cafile /etc/mqttd/nats-ca.pem",
    ];
    assert_eq!(samples.len(), super::cluster::DIRECTIVES.len(), "a sample for each directive");
    for sample in samples {
        assert_ne!(parse(&format!("{sample}\n")), ClusterConfig::default(), "{sample} changes nothing");
    }
}

#[test]
fn cluster_nats_url_takes_several_urls_on_one_line_or_several_lines() {
    let c = parse("cluster_nats_url nats://a:4222, nats://b:4222\ncluster_nats_url nats://c:4222\n");
    assert_eq!(c.nats_urls, ["nats://a:4222", "nats://b:4222", "nats://c:4222"]);
    assert!(c.enabled());
}

#[test]
fn bad_cluster_values_are_refused_with_file_line_and_what_is_accepted() {
    for (text, accepted) in [
        ("cluster_name a.b\n", "letters, digits"),
        ("cluster_replicas 0\n", "1..=5"),
        ("cluster_replicas 6\n", "1..=5"),
        ("cluster_nats_url nats://a:1,,nats://b:2\n", "NATS URLs"),
        ("cluster_nats_url\n", "NATS URLs"),
    ] {
        let e = error(&format!("\n{text}"));
        assert!(matches!(e, ConfigError::Invalid { line: 2, .. }), "{text}: {e}");
        assert!(e.to_string().starts_with(&format!("{ORIGIN}:2: ")), "{e}");
        assert!(e.to_string().contains(accepted), "{text}: {e}");
    }
    let e = error("cluster_nats_cafile /a\ncluster_nats_cafile /b\n");
    assert!(e.to_string().contains("only once"), "{e}");
}

#[test]
fn a_misspelt_cluster_directive_is_an_error_with_a_suggestion() {
    let e = error("cluster_nats_urls nats://a:4222\n");
    assert!(matches!(e, ConfigError::Unknown { .. }), "{e}");
    assert!(e.to_string().contains("did you mean 'cluster_nats_url'?"), "{e}");
}

#[test]
fn a_changed_cluster_needs_a_restart() {
    let running = Config::parse("cluster_nats_url nats://a:4222\n", Path::new(ORIGIN)).expect("parses");
    let new = Config::parse("cluster_nats_url nats://b:4222\n", Path::new(ORIGIN)).expect("parses");
    let (not_reloaded, _) = running.changes_needing_restart(&new);
    assert!(not_reloaded.iter().any(|c| c.contains("cluster")), "{not_reloaded:?}");
}
