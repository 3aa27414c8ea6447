//! `mqttd-passwd acl-check`: which rule of an ACL file allows or denies an access.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use mqttd_auth::{Access, Acl};
use mqttd_proto::topic::{validate_topic_filter, validate_topic_name};

/// What to check.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Operation {
    /// Receive messages published to TOPIC.
    Read,
    /// Publish to TOPIC.
    Write,
    /// Subscribe to the filter TOPIC (the v5 SUBACK decision).
    Subscribe,
}

/// Arguments of `acl-check`.
#[derive(Debug, Args)]
pub struct AclCheck {
    /// The ACL file (Mosquitto's acl_file format).
    #[arg(long, value_name = "FILE")]
    acl: PathBuf,
    /// The client's username; leave out for an anonymous client.
    #[arg(long, short = 'u', value_name = "USER")]
    user: Option<String>,
    /// The client id, substituted for %c in pattern rules.
    #[arg(long, short = 'i', value_name = "ID", default_value = "")]
    client_id: String,
    /// Topic name (read, write) or topic filter (subscribe).
    #[arg(value_name = "TOPIC")]
    topic: String,
    /// read, write or subscribe.
    #[arg(value_enum, value_name = "ACCESS")]
    access: Operation,
}

/// Prints `allow` or `deny` and the deciding rule. Exit code 0 for allow, 1 for deny.
pub fn run(args: &AclCheck) -> Result<ExitCode> {
    let path = args.acl.display();
    let text = std::fs::read_to_string(&args.acl).with_context(|| format!("cannot read ACL file {path}"))?;
    let acl = Acl::parse(&text).with_context(|| format!("invalid ACL file {path}"))?;
    let user = args.user.as_deref();
    let decision = match args.access {
        Operation::Read | Operation::Write => {
            if let Err(e) = validate_topic_name(&args.topic) {
                bail!("{:?} is not a topic name: {e} (to check a subscription use `subscribe`)", args.topic);
            }
            let access = if matches!(args.access, Operation::Read) { Access::Read } else { Access::Write };
            acl.check(user, &args.client_id, &args.topic, access)
        }
        Operation::Subscribe => {
            if let Err(e) = validate_topic_filter(&args.topic) {
                bail!("{:?} is not a topic filter: {e}", args.topic);
            }
            acl.check_subscribe(user, &args.client_id, &args.topic)
        }
    };
    println!("{}", if decision.allowed { "allow" } else { "deny" });
    match decision.rule {
        Some(rule) => println!("rule: {rule}"),
        None if user.is_some() || acl.is_empty() => println!("no rule matched: denied by default"),
        None => println!("no rule matched: denied by default (client without username: only rules before the first `user` line and patterns apply)"),
    }
    Ok(if decision.allowed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
