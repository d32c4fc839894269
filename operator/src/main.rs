//! `cilvest-operator`: reconciles CilvestPipelines. See `ARCHITECTURE.md`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    cilvest_operator::cli::Args::parse_and_run()
}
