//! Topic matching against 100k subscriptions, a tenth of them with `+` or `#` wildcards.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use mqttd_core::{Match, TopicTree};
use mqttd_proto::SubscriptionOptions;

const SUBSCRIPTIONS: u64 = 100_000;

/// 90k exact filters `site/{s}/device/{d}/temp`, 5k `site/{s}/device/+/temp`, 5k `site/{s}/#`.
fn tree() -> TopicTree<u64> {
    let mut tree = TopicTree::default();
    let options = SubscriptionOptions::default();
    for key in 0..SUBSCRIPTIONS {
        let site = key % 1000;
        let filter = match key % 20 {
            0 => format!("site/{site}/device/+/temp"),
            1 => format!("site/{site}/#"),
            _ => format!("site/{site}/device/{}/temp", key / 1000),
        };
        tree.subscribe(&filter, key, key, options, None);
    }
    tree
}

fn matching(c: &mut Criterion) {
    let tree = tree();
    let mut out: Vec<Match<u64>> = Vec::with_capacity(64);
    let mut group = c.benchmark_group("topic_tree_100k");
    group.bench_function("match_exact_and_wildcards", |b| {
        b.iter(|| {
            out.clear();
            tree.matches(black_box("site/417/device/42/temp"), &mut out);
            out.len()
        })
    });
    group.bench_function("match_no_subscriber", |b| {
        b.iter(|| {
            out.clear();
            tree.matches(black_box("other/417/device/42/temp"), &mut out);
            out.len()
        })
    });
    group.bench_function("match_dollar_topic", |b| {
        b.iter(|| {
            out.clear();
            tree.matches(black_box("$SYS/broker/clients/connected"), &mut out);
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
