//! The `cilvest` command line: one subcommand per job.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cilvest",
    version,
    about = "Cilvest workers: producer, consumer, daily job and demo"
)]
pub struct Args {
    /// Log format: `json` (default in containers) or `text`.
    #[arg(long, global = true, env = "CILVEST_LOG_FORMAT", default_value = "json")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Poll X recent search and publish tweets to the raw Kafka topic.
    Producer(crate::jobs::producer::Args),
    /// Move raw tweets from Kafka into the data lake.
    Consumer(crate::jobs::consumer::Args),
    /// Clean and classify one day of tweets, load BigQuery, build the marts and index search.
    Daily(crate::jobs::daily::Args),
    /// Run the whole pipeline on this machine with embedded defaults.
    Demo(crate::jobs::demo::Args),
    /// Delete every Dataproc cluster a pipeline left (run by the operator when a Dataproc pipeline is deleted).
    DataprocCleanup(crate::jobs::dataproc_cleanup::Args),
    /// Import the pipeline's data view and dashboard into its Kibana (run by the operator as a Job).
    KibanaSetup(crate::jobs::kibana_setup::Args),
}

impl Args {
    /// Parse the command line, run the chosen job, and map its outcome to an exit code.
    pub fn parse_and_run() -> ExitCode {
        let args = Self::parse();
        init_logging(args.log_format);
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime,
            Err(err) => {
                eprintln!("error: failed to start the async runtime: {err}");
                return ExitCode::FAILURE;
            }
        };
        match runtime.block_on(args.command.run()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(error = %error_chain(err.as_ref()), "cilvest failed");
                ExitCode::FAILURE
            }
        }
    }
}

/// An error and its causes on one line, each cause once: most of our errors already print their source in their
/// own message, and anyhow's `{:#}` would repeat it.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl Command {
    async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Producer(args) => Ok(crate::jobs::producer::run(args).await?),
            Self::Consumer(args) => Ok(args.run().await?),
            Self::Daily(args) => crate::jobs::daily::main(args).await.map(drop).map_err(Into::into),
            Self::Demo(args) => Ok(crate::jobs::demo::run(args).await?),
            Self::DataprocCleanup(args) => Ok(crate::jobs::dataproc_cleanup::run(args).await?),
            Self::KibanaSetup(args) => Ok(crate::jobs::kibana_setup::run(args).await?),
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
