//! `mqtt-bench`: the load generator on its own, the same as `mqtt bench`.

use std::process::ExitCode;

use clap::Parser;
use mqttd_bench::{run_blocking, BenchOptions};

/// Load an MQTT broker and report throughput, losses, duplicates, reordering, latency and CPU time.
#[derive(Debug, Parser)]
#[command(name = "mqtt-bench", version, disable_help_flag = true)]
struct Cli {
    #[command(flatten)]
    opts: BenchOptions,
    /// Print help (`-h` is the host, as in `mqtt pub`).
    #[arg(short = 'H', long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.opts.json;
    match run_blocking(cli.opts) {
        Ok(report) if json => {
            println!("{}", report.to_json());
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", report.table());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mqtt-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
