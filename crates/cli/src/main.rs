//! `mqtt`: the command-line client. Arguments, output and exit codes live here; MQTT lives in `mqttd_client`.

mod args;
mod help;

use clap::Parser;

fn main() {
    let cli = args::Cli::parse();
    println!("{cli:#?}");
}
