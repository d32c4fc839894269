//! `cilvest`: the pipeline's workers. See `ARCHITECTURE.md`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cilvest",
    version,
    about = "Cilvest workers: producer, consumer, daily job and demo"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Poll X recent search and publish tweets to the raw Kafka topic.
    Producer,
    /// Move raw tweets from Kafka into the data lake.
    Consumer,
    /// Clean and classify one day of tweets, load BigQuery, build the marts and index search.
    Daily,
    /// Run the whole pipeline on this machine with embedded defaults.
    Demo,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // The subcommands land one issue at a time; until then say so plainly rather than pretend.
    eprintln!("error: `cilvest {:?}` is not implemented yet", args.command);
    ExitCode::from(2)
}
