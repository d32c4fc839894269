//! `cilvest-operator`: reconciles CilvestPipelines. See `ARCHITECTURE.md`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cilvest-operator",
    version,
    about = "Reconciles CilvestPipelines into Kafka topics, workers, a daily job and search"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CilvestPipeline CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::Crd => match cilvest_crds::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: failed to render the CRD: {err}");
                ExitCode::FAILURE
            }
        },
    }
}
