//! `mqtt`: the command-line client, compatible with the MQTT.js CLI (`mqtt pub`, `mqtt sub`) and going
//! beyond it (mosquitto_sub-style output options, MQTT 5, `mqtt rr`).
//!
//! Owns: arguments, output and exit codes. Must not: speak MQTT itself; that is `mqttd_client`.

mod args;
mod debug;
mod fail;
mod help;
mod options;
mod output;
mod publish;
mod rr;
mod subscribe;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

use args::{Cli, Command};
use fail::Failure;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(fail::USAGE),
            };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.message.is_empty() {
                failure.report();
            }
            ExitCode::from(failure.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let command = match cli.command {
        None if cli.version => Command::Version,
        None => {
            print!("{}", help::MAIN);
            return Ok(());
        }
        Some(command) => command,
    };
    match command {
        Command::Version => {
            println!("mqtt (mqttd) version: {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Help { command } => help(command.as_deref()),
        Command::Publish(args) => block_on(publish::run(args)),
        Command::Subscribe(args) => block_on(subscribe::run(args)),
        Command::Request(args) => block_on(rr::run(args)),
        Command::Bench(args) => bench(args.opts),
    }
}

/// `mqtt bench`: the load generator of `mqttd-bench`, with its table (or one JSON line with `--json`).
fn bench(opts: mqttd_bench::BenchOptions) -> Result<(), Failure> {
    let json = opts.json;
    let report = mqttd_bench::run_blocking(opts).map_err(|e| Failure::new(1, format!("bench: {e}")))?;
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn help(command: Option<&str>) -> Result<(), Failure> {
    let text = match command {
        None | Some("help") => help::MAIN,
        Some("publish" | "pub") => help::PUBLISH,
        Some("subscribe" | "sub") => help::SUBSCRIBE,
        Some("rr" | "request") => help::RR,
        Some("bench") => "Usage: mqtt bench [OPTIONS] <fanin|fanout|pairs|latency|conns>\n\nRun 'mqtt bench --help' for every option.\n",
        Some("version") => "Usage: mqtt version\n\nPrints the version of this program.\n",
        Some(other) => {
            return Err(Failure::usage(format!("no help for {other:?}: no such command"))
                .with_hint("commands: publish (pub), subscribe (sub), rr, version, help"))
        }
    };
    print!("{text}");
    Ok(())
}

fn block_on(future: impl std::future::Future<Output = Result<(), Failure>>) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(fail::ERROR, format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(future)
}
