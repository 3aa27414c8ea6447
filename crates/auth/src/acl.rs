//! Mosquitto ACL files: who may read and write which topics.
//!
//! ```text
//! # rules before any `user` line apply to clients without a username
//! topic read public/#
//! user alice
//! topic readwrite alice/#
//! topic deny alice/secret/#
//! # pattern rules apply to every client, `%c` is the client id, `%u` the username
//! pattern readwrite clients/%c/#
//! ```
//!
//! The access word is optional (`topic FILTER` means readwrite); `topic read` alone is the topic
//! "read", as in Mosquitto. The filter is the rest of the line and may contain spaces.
//!
//! A check, as Mosquitto 2 does it:
//! 1. The client's own rules: those under `user NAME` for its username, or the rules before any `user`
//!    line when it has no username. A matching `deny` rule refuses; otherwise a matching rule that
//!    grants the access allows.
//! 2. Then the `pattern` rules, in the same way (`deny` first). A pattern with `%u` never applies to a
//!    client without a username. A substitution whose value contains `+` or `#` makes that rule match
//!    nothing, so a client cannot widen a pattern by choosing its client id or username. (Mosquitto
//!    instead refuses every pattern rule to such a client; values with `/` are substituted as they
//!    are, as in Mosquitto 2.)
//! 3. Otherwise the access is refused.

use std::collections::HashMap;

use mqttd_proto::topic::{matches, validate_topic_filter};

use crate::error::{FileError, FileErrorKind};
use crate::filter::{covers, intersects};

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Receive messages published to the topic (deliveries, retained messages).
    Read,
    /// Publish to the topic (PUBLISH, wills).
    Write,
}

/// The access word of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// `read`
    Read,
    /// `write`
    Write,
    /// `readwrite`, also when the word is left out.
    ReadWrite,
    /// `deny`: refuses both, before any rule that grants.
    Deny,
}

impl Permission {
    fn grants(self, access: Access) -> bool {
        matches!(
            (self, access),
            (Permission::ReadWrite, _) | (Permission::Read, Access::Read) | (Permission::Write, Access::Write)
        )
    }
}

/// Whether a rule came from a `topic` or a `pattern` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// `topic`: applies to the user it is listed under (or to anonymous clients).
    Topic,
    /// `pattern`: applies to every client, after substituting `%c` and `%u`.
    Pattern,
}

/// One `topic` or `pattern` line of an ACL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// 1-based line number in the file.
    pub line: usize,
    /// The line as written, without surrounding blanks.
    pub text: String,
    /// `topic` or `pattern`.
    pub kind: RuleKind,
    /// The access word.
    pub permission: Permission,
    /// The topic filter, with `%c`/`%u` still in it for patterns.
    pub filter: String,
    /// The `user` section the rule is in (`None`: before any `user` line, or a pattern).
    pub user: Option<String>,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.text)?;
        match (&self.user, self.kind) {
            (Some(user), RuleKind::Topic) => write!(f, " (under `user {user}`)"),
            (None, RuleKind::Topic) => f.write_str(" (anonymous clients)"),
            (_, RuleKind::Pattern) => Ok(()),
        }
    }
}

/// The answer to an ACL check, with the rule that decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    /// Whether the access is allowed.
    pub allowed: bool,
    /// The rule that decided; `None` when no rule matched and the access was refused by default.
    pub rule: Option<&'a Rule>,
}

impl Decision<'_> {
    const DEFAULT_DENY: Decision<'static> = Decision { allowed: false, rule: None };
}

/// The rules of one section, `deny` rules kept apart because they are checked first.
#[derive(Debug, Clone, Default)]
struct Rules {
    deny: Vec<Rule>,
    grant: Vec<Rule>,
}

impl Rules {
    fn push(&mut self, rule: Rule) {
        if rule.permission == Permission::Deny {
            self.deny.push(rule);
        } else {
            self.grant.push(rule);
        }
    }

    fn len(&self) -> usize {
        self.deny.len() + self.grant.len()
    }
}

/// A parsed ACL file. Checks are pure functions of the file and the client's identity.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    anonymous: Rules,
    users: HashMap<String, Rules>,
    patterns: Rules,
}

/// The client whose access is checked.
#[derive(Clone, Copy)]
struct Client<'c> {
    username: Option<&'c str>,
    client_id: &'c str,
}

impl Acl {
    /// Parses an ACL file; the first bad line is reported with its number.
    pub fn parse(text: &str) -> Result<Acl, FileError> {
        let mut acl = Acl::default();
        let mut user: Option<String> = None;
        for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
            let error = |kind| FileError { line: number, kind };
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (keyword, rest) = split_word(trimmed);
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(error(FileErrorKind::MissingUsername));
                    }
                    user = Some(rest.to_owned());
                }
                "topic" | "pattern" => {
                    let rule = parse_rule(keyword, rest, trimmed, number, &user).map_err(error)?;
                    match (rule.kind, &rule.user) {
                        (RuleKind::Pattern, _) => acl.patterns.push(rule),
                        (RuleKind::Topic, None) => acl.anonymous.push(rule),
                        (RuleKind::Topic, Some(name)) => {
                            acl.users.entry(name.clone()).or_default().push(rule);
                        }
                    }
                }
                other => return Err(error(FileErrorKind::UnknownKeyword(other.to_owned()))),
            }
        }
        Ok(acl)
    }

    /// Number of `topic` and `pattern` rules.
    pub fn len(&self) -> usize {
        self.anonymous.len() + self.patterns.len() + self.users.values().map(Rules::len).sum::<usize>()
    }

    /// Whether the file has no rule (then every access is refused).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decides whether the client may read or write `topic` (a topic name). See the module docs
    /// for the order of rules. `$SYS` topics follow the same rules; a filter starting with a
    /// wildcard does not match them.
    pub fn check(&self, username: Option<&str>, client_id: &str, topic: &str, access: Access) -> Decision<'_> {
        let client = Client { username, client_id };
        self.decide(
            client,
            |filter| matches(filter, topic),
            |permission, filter| permission.grants(access) && matches(filter, topic),
        )
    }

    /// Decides a SUBSCRIBE to `filter` (used for the v5 SUBACK reason 0x87, Not authorized).
    ///
    /// A subscription is refused only when no message it could match would ever be delivered:
    /// - refused when a `deny` rule that applies covers the whole filter (every topic the filter
    ///   matches is denied), or when no rule that grants `read` could match any topic the filter
    ///   matches (for example `#` for a client that may read nothing);
    /// - allowed as soon as a rule granting `read` overlaps the filter.
    ///
    /// So `#` is granted to a client that may read `sensors/#`, and what it receives is then cut
    /// down by [`Acl::check`] with [`Access::Read`] on every delivery, as Mosquitto does (Mosquitto
    /// grants every subscription and only filters deliveries). Refusing only hopeless subscriptions
    /// tells a v5 client at once that it asked for something it can never read, without breaking
    /// clients that subscribe broadly. An invalid filter is refused with no rule.
    pub fn check_subscribe(&self, username: Option<&str>, client_id: &str, filter: &str) -> Decision<'_> {
        if validate_topic_filter(filter).is_err() {
            return Decision::DEFAULT_DENY;
        }
        let client = Client { username, client_id };
        self.decide(
            client,
            |rule_filter| covers(rule_filter, filter),
            |permission, rule_filter| permission.grants(Access::Read) && intersects(rule_filter, filter),
        )
    }

    /// Runs the two phases (own rules, then patterns), `deny` before grants in each.
    fn decide<'a>(
        &'a self,
        client: Client<'_>,
        denied_by: impl Fn(&str) -> bool,
        granted_by: impl Fn(Permission, &str) -> bool,
    ) -> Decision<'a> {
        let own = match client.username {
            Some(name) => self.users.get(name),
            None => Some(&self.anonymous),
        };
        if let Some(rules) = own {
            if let Some(rule) = rules.deny.iter().find(|r| denied_by(&r.filter)) {
                return Decision { allowed: false, rule: Some(rule) };
            }
            if let Some(rule) = rules.grant.iter().find(|r| granted_by(r.permission, &r.filter)) {
                return Decision { allowed: true, rule: Some(rule) };
            }
        }
        let mut buffer = String::new();
        for rule in &self.patterns.deny {
            if substitute(&rule.filter, client, &mut buffer) && denied_by(&buffer) {
                return Decision { allowed: false, rule: Some(rule) };
            }
        }
        for rule in &self.patterns.grant {
            if substitute(&rule.filter, client, &mut buffer) && granted_by(rule.permission, &buffer) {
                return Decision { allowed: true, rule: Some(rule) };
            }
        }
        Decision::DEFAULT_DENY
    }
}

/// Splits off the first space-separated word; the rest has its leading blanks removed.
fn split_word(text: &str) -> (&str, &str) {
    match text.split_once([' ', '\t']) {
        Some((word, rest)) => (word, rest.trim_start()),
        None => (text, ""),
    }
}

fn parse_rule(
    keyword: &str,
    rest: &str,
    text: &str,
    line: usize,
    user: &Option<String>,
) -> Result<Rule, FileErrorKind> {
    let (kind, keyword) = if keyword == "topic" { (RuleKind::Topic, "topic") } else { (RuleKind::Pattern, "pattern") };
    let (word, after) = split_word(rest);
    if word.is_empty() {
        return Err(FileErrorKind::MissingFilter(keyword));
    }
    // One word: it is the filter and the access is readwrite (Mosquitto reads `topic read` so too).
    let (permission, filter) = if after.is_empty() {
        (Permission::ReadWrite, word)
    } else {
        let permission = match word {
            "read" => Permission::Read,
            "write" => Permission::Write,
            "readwrite" => Permission::ReadWrite,
            "deny" => Permission::Deny,
            other => return Err(FileErrorKind::InvalidAccess(other.to_owned())),
        };
        (permission, after)
    };
    if let Err(reason) = validate_topic_filter(filter) {
        return Err(FileErrorKind::InvalidFilter { filter: filter.to_owned(), reason });
    }
    Ok(Rule {
        line,
        text: text.to_owned(),
        kind,
        permission,
        filter: filter.to_owned(),
        user: if kind == RuleKind::Topic { user.clone() } else { None },
    })
}

/// Writes `pattern` with `%c` and `%u` replaced into `out`. Returns false when the rule cannot
/// apply to this client: `%u` without a username, or a substituted value containing `+` or `#`.
fn substitute(pattern: &str, client: Client<'_>, out: &mut String) -> bool {
    out.clear();
    let mut rest = pattern;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let value = match after.as_bytes().first() {
            Some(b'c') => Some(client.client_id),
            Some(b'u') => match client.username {
                Some(name) => Some(name),
                None => return false,
            },
            _ => None,
        };
        match value {
            Some(value) if value.contains(['+', '#']) => return false,
            Some(value) => {
                out.push_str(value);
                rest = &after[1..];
            }
            None => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    true
}

#[cfg(test)]
mod tests;
