//! `cilvest dataproc-cleanup`: delete every Dataproc cluster labelled with a pipeline. The operator runs it as a
//! Job when a Dataproc pipeline is deleted, so that the operator itself never needs Google credentials.

use clap::Parser;

use crate::google::dataproc::{Client, DataprocError, credentials};

#[derive(Parser, Debug)]
pub struct Args {
    /// Google Cloud project of the clusters.
    #[arg(long)]
    project: String,
    /// Dataproc region of the clusters.
    #[arg(long)]
    region: String,
    /// Namespace of the pipeline (the `cilvest-namespace` cluster label).
    #[arg(long)]
    namespace: String,
    /// Name of the pipeline (the `cilvest-pipeline` cluster label).
    #[arg(long)]
    pipeline: String,
    /// Dataproc API base URL (tests point it at a fake server).
    #[arg(long, env = "CILVEST_DATAPROC_ENDPOINT")]
    dataproc_endpoint: Option<String>,
}

/// Delete the pipeline's clusters; succeeds when none is left.
pub async fn run(args: Args) -> Result<(), DataprocError> {
    let client = Client::new(
        args.dataproc_endpoint.as_deref(),
        &args.project,
        &args.region,
        credentials().await?,
    );
    let deleted = client.delete_leftovers(&args.namespace, &args.pipeline).await?;
    tracing::info!(clusters = ?deleted, pipeline = %args.pipeline, "deleted the pipeline's Dataproc clusters");
    Ok(())
}
