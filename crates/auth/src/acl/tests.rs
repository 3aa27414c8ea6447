use super::*;

const FILE: &str = "\
# anonymous clients
topic read public/#
topic read $SYS/broker/uptime

user alice
topic readwrite alice/#
topic deny alice/secret/#
topic write  shared/in box

user bob
topic bob/#

pattern read clients/%c/status
pattern readwrite users/%u/#
pattern deny users/%u/locked
";

fn acl() -> Acl {
    Acl::parse(FILE).unwrap()
}

fn line(decision: Decision<'_>) -> Option<usize> {
    decision.rule.map(|r| r.line)
}

#[test]
fn rules_before_any_user_line_apply_to_anonymous_clients_only() {
    let acl = acl();
    let d = acl.check(None, "c1", "public/news", Access::Read);
    assert!(d.allowed);
    assert_eq!(line(d), Some(2));
    assert!(!acl.check(None, "c1", "public/news", Access::Write).allowed);
    assert!(!acl.check(Some("alice"), "c1", "public/news", Access::Read).allowed);
}

#[test]
fn deny_wins_over_a_broader_grant_whatever_the_order() {
    let acl = acl();
    assert!(acl.check(Some("alice"), "c", "alice/notes", Access::Write).allowed);
    let d = acl.check(Some("alice"), "c", "alice/secret/plans", Access::Read);
    assert!(!d.allowed);
    assert_eq!(line(d), Some(7));
    assert_eq!(d.rule.unwrap().permission, Permission::Deny);
}

#[test]
fn a_missing_access_word_means_readwrite_and_filters_may_contain_spaces() {
    let acl = acl();
    assert!(acl.check(Some("bob"), "c", "bob/x", Access::Read).allowed);
    assert!(acl.check(Some("bob"), "c", "bob/x", Access::Write).allowed);
    assert!(acl.check(Some("alice"), "c", "shared/in box", Access::Write).allowed);
    assert!(!acl.check(Some("alice"), "c", "shared/in box", Access::Read).allowed);
}

#[test]
fn patterns_substitute_client_id_and_username() {
    let acl = acl();
    let d = acl.check(Some("bob"), "sensor-1", "clients/sensor-1/status", Access::Read);
    assert!(d.allowed);
    assert_eq!(d.rule.unwrap().kind, RuleKind::Pattern);
    assert!(!acl.check(Some("bob"), "sensor-1", "clients/sensor-2/status", Access::Read).allowed);
    assert!(acl.check(Some("carol"), "x", "users/carol/inbox", Access::Write).allowed);
    assert!(!acl.check(Some("carol"), "x", "users/dave/inbox", Access::Write).allowed);
}

#[test]
fn pattern_deny_rules_are_checked_before_pattern_grants() {
    let acl = acl();
    let d = acl.check(Some("carol"), "x", "users/carol/locked", Access::Read);
    assert!(!d.allowed);
    assert_eq!(line(d), Some(15));
}

#[test]
fn username_patterns_never_apply_to_anonymous_clients() {
    let acl = Acl::parse("pattern readwrite users/%u/#\n").unwrap();
    assert!(!acl.check(None, "x", "users/%u/a", Access::Read).allowed);
    assert!(!acl.check(None, "x", "users//a", Access::Read).allowed);
}

#[test]
fn wildcards_in_client_id_or_username_never_widen_a_pattern() {
    let acl = Acl::parse("pattern readwrite clients/%c/#\npattern read users/%u\n").unwrap();
    for id in ["+", "#", "a/+", "x#"] {
        assert!(!acl.check(None, id, "clients/victim/data", Access::Read).allowed, "{id}");
        assert!(!acl.check_subscribe(None, id, "clients/victim/#").allowed, "{id}");
    }
    assert!(!acl.check(Some("+"), "c", "users/victim", Access::Read).allowed);
    assert!(!acl.check(Some("#"), "c", "users/victim", Access::Read).allowed);
    assert!(acl.check(Some("bob"), "c", "users/bob", Access::Read).allowed);
}

#[test]
fn percent_signs_other_than_c_and_u_stay_as_they_are() {
    let acl = Acl::parse("pattern read a/%x/%%c/%\n").unwrap();
    assert!(acl.check(None, "id", "a/%x/%id/%", Access::Read).allowed);
}

#[test]
fn a_user_without_a_section_gets_patterns_only_and_everything_else_is_denied() {
    let acl = acl();
    let d = acl.check(Some("mallory"), "m", "public/news", Access::Read);
    assert_eq!(d, Decision { allowed: false, rule: None });
    assert!(Acl::parse("").unwrap().is_empty());
    assert!(!Acl::parse("").unwrap().check(None, "c", "a", Access::Read).allowed);
}

#[test]
fn sys_topics_need_rules_that_name_them() {
    let acl = Acl::parse("topic read #\ntopic read $SYS/broker/uptime\n").unwrap();
    assert!(acl.check(None, "c", "a/b", Access::Read).allowed);
    assert!(!acl.check(None, "c", "$SYS/broker/clients", Access::Read).allowed);
    assert!(acl.check(None, "c", "$SYS/broker/uptime", Access::Read).allowed);
    let plus = Acl::parse("topic read +/broker/#\n").unwrap();
    assert!(!plus.check(None, "c", "$SYS/broker/uptime", Access::Read).allowed);
}

#[test]
fn user_sections_with_the_same_name_are_merged() {
    let acl = Acl::parse("user a\ntopic read x\nuser b\ntopic read y\nuser a\ntopic read z\n").unwrap();
    assert!(acl.check(Some("a"), "c", "x", Access::Read).allowed);
    assert!(acl.check(Some("a"), "c", "z", Access::Read).allowed);
    assert!(!acl.check(Some("a"), "c", "y", Access::Read).allowed);
    assert_eq!(acl.len(), 3);
}

#[test]
fn one_word_after_topic_is_the_filter_as_in_mosquitto() {
    let acl = Acl::parse("topic read\n").unwrap();
    assert!(acl.check(None, "c", "read", Access::Write).allowed);
}

#[test]
fn subscriptions_are_refused_only_when_nothing_could_be_delivered() {
    let acl = acl();
    // Overlaps alice/#: granted, deliveries are filtered one by one.
    assert!(acl.check_subscribe(Some("alice"), "c", "#").allowed);
    assert!(acl.check_subscribe(Some("alice"), "c", "+/notes").allowed);
    // Wholly inside a deny rule.
    let d = acl.check_subscribe(Some("alice"), "c", "alice/secret/+");
    assert!(!d.allowed);
    assert_eq!(line(d), Some(7));
    // No read rule overlaps.
    assert!(!acl.check_subscribe(Some("alice"), "c", "shared/#").allowed);
    assert!(!acl.check_subscribe(None, "c", "private/#").allowed);
    assert!(acl.check_subscribe(None, "c", "#").allowed);
    // `#` does not reach $SYS, so only a $SYS filter can be granted on it.
    let sys = Acl::parse("topic read $SYS/#\n").unwrap();
    assert!(!sys.check_subscribe(None, "c", "#").allowed);
    assert!(sys.check_subscribe(None, "c", "$SYS/broker/+").allowed);
    assert!(!acl.check_subscribe(None, "c", "a/#/b").allowed);
}

#[test]
fn bad_lines_are_reported_with_their_number() {
    let cases = [
        ("topic", FileErrorKind::MissingFilter("topic")),
        ("pattern   ", FileErrorKind::MissingFilter("pattern")),
        ("user", FileErrorKind::MissingUsername),
        ("topic rw a/b", FileErrorKind::InvalidAccess("rw".into())),
        ("Topic read a", FileErrorKind::UnknownKeyword("Topic".into())),
        (
            "topic read a/#/b",
            FileErrorKind::InvalidFilter {
                filter: "a/#/b".into(),
                reason: mqttd_proto::topic::TopicError::MisplacedMultiLevel,
            },
        ),
    ];
    for (text, kind) in cases {
        let err = Acl::parse(&format!("# c\n\n{text}\n")).unwrap_err();
        assert_eq!(err, FileError { line: 3, kind }, "{text}");
    }
}

#[test]
fn rules_display_their_line_and_section() {
    let acl = acl();
    let rule = acl.check(Some("alice"), "c", "alice/x", Access::Read).rule.unwrap();
    assert_eq!(rule.to_string(), "line 6: topic readwrite alice/# (under `user alice`)");
    let anon = acl.check(None, "c", "public/x", Access::Read).rule.unwrap();
    assert_eq!(anon.to_string(), "line 2: topic read public/# (anonymous clients)");
}

mod soundness {
    use super::*;
    use proptest::prelude::*;

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![Just("a"), Just("b"), Just("$SYS"), Just("%c"), Just("%u")].prop_map(String::from)
    }

    fn filter(wild: bool) -> impl Strategy<Value = String> {
        let lvl = if wild { prop_oneof![4 => level(), 1 => Just("+".to_string())].boxed() } else { level().boxed() };
        (prop::collection::vec(lvl, 1..4), any::<bool>()).prop_map(move |(levels, hash)| {
            let mut text = levels.join("/");
            if hash && wild {
                text.push_str("/#");
            }
            text
        })
    }

    fn line() -> impl Strategy<Value = String> {
        let access = prop_oneof![Just("read "), Just("write "), Just("readwrite "), Just("deny "), Just("")];
        prop_oneof![
            (prop_oneof![Just("topic "), Just("pattern ")], access, filter(true))
                .prop_map(|(k, a, f)| format!("{k}{a}{f}")),
            prop_oneof![Just("user a"), Just("user b")].prop_map(String::from),
        ]
    }

    proptest! {
        /// A refused subscription never hides a message the client could read.
        #[test]
        fn refusing_a_subscription_implies_its_topics_are_unreadable(
            lines in prop::collection::vec(line(), 0..8),
            user in prop_oneof![Just(None), Just(Some("a")), Just(Some("b"))],
            client_id in prop_oneof![Just("a"), Just("b"), Just("+")],
            sub in filter(true),
            topic in filter(false),
        ) {
            let acl = Acl::parse(&lines.join("\n")).unwrap();
            let topic = topic.replace('%', "x");
            let sub = sub.replace('%', "x");
            if mqttd_proto::topic::matches(&sub, &topic) && !acl.check_subscribe(user, client_id, &sub).allowed {
                prop_assert!(!acl.check(user, client_id, &topic, Access::Read).allowed);
            }
        }
    }
}
