//! `cilvest kibana-setup`: import the pipeline's data view and dashboard into its Kibana (`search::dashboard`,
//! `search::kibana`). The operator runs it as a Job when a pipeline has managed Kibana, again whenever what it
//! imports would change; the stable ids make every run replace the objects, never add copies.

use std::{path::PathBuf, time::Duration};

use clap::Parser;

use cilvest_crds::{WorkerConfig, worker_config::KIBANA_PASSWORD_ENV};

use crate::search::{
    dashboard,
    kibana::{Kibana, KibanaError},
};

#[derive(Parser, Debug)]
pub struct Args {
    /// The pipeline's worker configuration (`pipeline.json`).
    #[arg(long)]
    config: PathBuf,
    /// Kibana's base URL (ECK: `https://<pipeline>-kb-http.<namespace>.svc:5601`).
    #[arg(long)]
    kibana_url: String,
    /// PEM CA bundle to verify Kibana against (ECK's `<pipeline>-kb-http-certs-public`).
    #[arg(long)]
    kibana_ca: Option<PathBuf>,
    /// The Kibana (Elasticsearch) user that imports; its password comes from `CILVEST_KIBANA_PASSWORD`.
    #[arg(long)]
    username: String,
    /// How long to wait for Kibana to start answering.
    #[arg(long, value_parser = cilvest_crds::values::duration_arg, default_value = "10m")]
    wait: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: cilvest_crds::worker_config::ConfigError,
    },
    #[error("{KIBANA_PASSWORD_ENV} is not set, but kibana user {0} needs a password")]
    Password(String),
    #[error("the pipeline has no elasticsearch target, so there is nothing to show in kibana")]
    NoSearch,
    #[error(transparent)]
    Kibana(#[from] KibanaError),
}

/// Import the saved objects; succeed when Kibana reports every one imported.
pub async fn run(args: Args) -> Result<(), SetupError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| SetupError::Read {
            path: path.clone(),
            source,
        })
    };
    let config = WorkerConfig::from_json(&read(&args.config)?).map_err(|source| SetupError::Config {
        path: args.config.clone(),
        source,
    })?;
    let alias = &config
        .spec
        .targets
        .elasticsearch
        .as_ref()
        .ok_or(SetupError::NoSearch)?
        .index;
    let password = std::env::var(KIBANA_PASSWORD_ENV).map_err(|_| SetupError::Password(args.username.clone()))?;
    let ca = args.kibana_ca.as_ref().map(read).transpose()?;
    let kibana = Kibana::new(&args.kibana_url, &args.username, &password, ca.as_deref())?;
    let objects = dashboard::saved_objects(&config.pipeline, alias);
    let answer = kibana.import(&dashboard::ndjson(&objects), args.wait).await?;
    tracing::info!(
        imported = answer.success_count,
        dashboard = %dashboard::dashboard_id(&config.pipeline),
        "imported the pipeline's kibana objects"
    );
    Ok(())
}
