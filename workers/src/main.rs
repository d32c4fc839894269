//! `cilvest`: the pipeline's workers. See `ARCHITECTURE.md`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    cilvest_workers::cli::Args::parse_and_run()
}
