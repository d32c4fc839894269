//! The `cilvest-operator` command line: `run` (the controller), `crd`, `validate`, `render` and `cost` (offline).

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand};
use futures::FutureExt;
use k8s_openapi::{
    api::coordination::v1::Lease, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, CustomResourceExt, ResourceExt,
    runtime::{conditions, wait::await_condition},
};
use tracing::info;

use cilvest_crds::{CilvestPipeline, Pipeline};

use crate::{
    apply,
    build::{self, BuildOptions},
    controller::{self, Context},
    leader::LeaderElection,
    meta,
    telemetry::Metrics,
};

#[derive(Parser)]
#[command(
    name = "cilvest-operator",
    version,
    about = "Reconciles CilvestPipelines into Kafka topics, workers, a daily job and search"
)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the cluster of the current kubeconfig or service account.
    Run(RunArgs),
    /// Print the CilvestPipeline CustomResourceDefinition as YAML.
    Crd,
    /// Check CilvestPipeline files as the API server would admit them (the CRD's schema, strict about unknown
    /// fields, its CEL rules, and the operator's own checks). Exit code 0 when every document is valid, 1 when one
    /// is not; one line per problem, `path: message`. For CI and pre-commit hooks before `kubectl apply` or a merge.
    Validate {
        /// CilvestPipeline YAML files; each may hold several documents.
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// `text` (one line per problem) or `json` (a report per document).
        #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
        output: crate::lint::Output,
    },
    /// Print every child manifest the operator would apply for a pipeline file, without a cluster.
    Render {
        /// A CilvestPipeline YAML file.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Namespace of the pipeline when the file names none.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        #[command(flatten)]
        build: BuildArgs,
    },
    /// Print a monthly estimate (USD and IDR) of what a pipeline file costs: X API, pods, bus, lake, BigQuery
    /// and the transform engine, from the versioned price table.
    Cost {
        /// A CilvestPipeline YAML file.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Namespace of the pipeline when the file names none.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        #[command(flatten)]
        cost: crate::cost::CostArgs,
    },
}

#[derive(clap::Args)]
struct BuildArgs {
    /// Container image of the `cilvest` workers.
    #[arg(long, env = "CILVEST_WORKER_IMAGE", default_value = concat!("ghcr.io/cilvest/cilvest:", env!("CARGO_PKG_VERSION")))]
    worker_image: String,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only these namespaces, comma-separated (default: all namespaces).
    #[arg(long, env = "CILVEST_WATCH_NAMESPACE", value_delimiter = ',')]
    namespace: Vec<String>,
    /// Address of /livez, /readyz and /metrics.
    #[arg(long, env = "CILVEST_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Apply the bundled CRD at start-up (the upgrade path Helm lacks: `helm upgrade` never updates CRDs).
    #[arg(long, env = "CILVEST_INSTALL_CRD")]
    install_crd: bool,
    /// Elect a leader through a Lease so only one replica writes.
    #[arg(long, env = "CILVEST_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    #[command(flatten)]
    build: BuildArgs,
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse {path} as a CilvestPipeline: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path} is not a valid CilvestPipeline:\n{problems}")]
    Lint { path: PathBuf, problems: String },
    #[error("{0}")]
    Invalid(#[from] cilvest_crds::InvalidSpec),
    #[error("failed to render YAML: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
    #[error("failed to connect to Kubernetes: {0}")]
    Connect(#[source] kube::Error),
    #[error("failed to install the CRD: {0}")]
    InstallCrd(#[source] kube::Error),
    #[error("the CilvestPipeline CRD is not established: {0}")]
    CrdNotEstablished(String),
    #[error("failed to serve metrics on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Cost(#[from] crate::cost::CostError),
    #[error("leadership was lost; exiting so that a fresh start can compete again")]
    LostLeadership,
}

impl Args {
    pub fn parse_and_run() -> ExitCode {
        let args = Self::parse();
        let result = match args.command {
            Command::Crd => cilvest_crds::crd_yaml()
                .map(|yaml| print!("{yaml}"))
                .map_err(CliError::from),
            Command::Validate { files, output } => return crate::lint::run(&files, output),
            Command::Render { file, namespace, build } => {
                render(&file, &namespace, &build).map(|yaml| print!("{yaml}"))
            }
            Command::Cost { file, namespace, cost } => cost_estimate(&file, &namespace, &cost).map(|t| print!("{t}")),
            Command::Run(run_args) => {
                init_logging();
                match tokio::runtime::Runtime::new() {
                    Ok(runtime) => runtime.block_on(run(run_args)),
                    Err(source) => Err(CliError::Serve {
                        addr: run_args.metrics_addr,
                        source,
                    }),
                }
            }
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::FAILURE
            }
        }
    }
}

fn cost_estimate(file: &PathBuf, namespace: &str, args: &crate::cost::CostArgs) -> Result<String, CliError> {
    let (pipeline, _) = read_pipeline(file, namespace)?;
    let mut prices = crate::cost::Prices::embedded()?;
    if let Some(path) = &args.prices {
        let text = std::fs::read_to_string(path).map_err(|source| CliError::Read {
            path: path.clone(),
            source,
        })?;
        prices = prices.with_overrides(&path.display().to_string(), &text)?;
    }
    let assumptions = args.assumptions();
    let own = crate::cost::estimate(&pipeline, &assumptions, &prices)?;
    let profiles = crate::cost::profiles::profiles(&pipeline, &assumptions, &prices)?;
    Ok(own.render() + &crate::cost::profiles::render(&own, &profiles))
}

/// A pipeline file, in `namespace` unless it names one, validated.
fn read_pipeline(file: &PathBuf, namespace: &str) -> Result<(CilvestPipeline, Pipeline), CliError> {
    let text = std::fs::read_to_string(file).map_err(|source| CliError::Read {
        path: file.clone(),
        source,
    })?;
    let document: serde_json::Value = serde_saphyr::from_str(&text).map_err(|e| CliError::Parse {
        path: file.clone(),
        message: e.to_string(),
    })?;
    // What the API server would refuse is refused here too, before anything is rendered or priced.
    let problems = crate::lint::Linter::get().check(&document);
    if !problems.is_empty() {
        return Err(CliError::Lint {
            path: file.clone(),
            problems: problems
                .iter()
                .map(|p| format!("  {}: {}", p.path, p.message))
                .collect::<Vec<_>>()
                .join("\n"),
        });
    }
    let mut pipeline: CilvestPipeline = serde_json::from_value(document).map_err(|e| CliError::Parse {
        path: file.clone(),
        message: e.to_string(),
    })?;
    if pipeline.metadata.namespace.is_none() {
        pipeline.metadata.namespace = Some(namespace.to_owned());
    }
    let parsed = Pipeline::new(&pipeline.spec)?;
    Ok((pipeline, parsed))
}

fn render(file: &PathBuf, namespace: &str, args: &BuildArgs) -> Result<String, CliError> {
    let (pipeline, parsed) = read_pipeline(file, namespace)?;
    let build::Resources {
        config,
        service_accounts,
        producer,
        consumer,
        daily,
        raw_topic,
        kafka_users,
        elasticsearch,
        kibana,
        kibana_setup,
        x_usage,
        network_policies,
    } = build::build(
        &pipeline,
        &parsed,
        &BuildOptions {
            worker_image: args.worker_image.clone(),
        },
    );
    let mut documents = vec![serde_saphyr::to_string(&config)?];
    for account in &service_accounts {
        documents.push(serde_saphyr::to_string(account)?);
    }
    documents.push(serde_saphyr::to_string(&producer)?);
    documents.push(serde_saphyr::to_string(&consumer)?);
    documents.push(serde_saphyr::to_string(&daily)?);
    documents.push(serde_saphyr::to_string(&x_usage.config_map)?);
    documents.push(serde_saphyr::to_string(&x_usage.role)?);
    documents.push(serde_saphyr::to_string(&x_usage.role_binding)?);
    for policy in &network_policies {
        documents.push(serde_saphyr::to_string(policy)?);
    }
    for object in [raw_topic, elasticsearch, kibana]
        .into_iter()
        .flatten()
        .chain(kafka_users)
    {
        documents.push(serde_saphyr::to_string(&object)?);
    }
    if let Some(job) = &kibana_setup {
        documents.push(serde_saphyr::to_string(job)?);
    }
    Ok(documents
        .iter()
        .map(|d| format!("---\n{}", d.trim_start_matches("---\n")))
        .collect())
}

async fn run(args: RunArgs) -> Result<(), CliError> {
    // Both rustls crypto providers get compiled in through dependencies; pick one before any TLS client exists.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default().await.map_err(CliError::Connect)?;
    let metrics = Metrics::new();
    let server = tokio::spawn(metrics.clone().serve(args.metrics_addr));

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = CilvestPipeline::crd();
    if args.install_crd {
        apply::apply(&crds, crd.clone(), meta::fingerprint(&crd))
            .await
            .map_err(CliError::InstallCrd)?;
        info!("applied the CilvestPipeline CRD");
    }
    let crd_name = crd.name_any();
    let established = await_condition(crds, &crd_name, conditions::is_crd_established());
    tokio::time::timeout(std::time::Duration::from_secs(60), established)
        .await
        .map_err(|_| {
            CliError::CrdNotEstablished("not established within 60 s; install crds/cilvestpipelines.yaml".into())
        })?
        .map_err(|e| CliError::CrdNotEstablished(e.to_string()))?;
    metrics.set_ready(true);

    let identity = args.identity.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME").unwrap_or_else(|_| format!("cilvest-operator-{}", std::process::id()))
    });
    let election = args.leader_election.then(|| {
        LeaderElection::new(
            Api::<Lease>::namespaced(client.clone(), &args.lease_namespace),
            "cilvest-operator",
            &identity,
        )
    });
    if let Some(election) = &election {
        tokio::select! {
            () = election.acquire() => {}
            () = shutdown_signal() => return Ok(()),
        }
    }

    let ctx = Arc::new(Context::new(
        client,
        BuildOptions {
            worker_image: args.build.worker_image,
        },
        metrics,
        identity,
    ));
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        tokio::select! {
            () = shutdown_signal() => {}
            _ = lost_rx => {}
        }
    }
    .shared();
    // One controller per listed namespace: a namespaced Role grants nothing cluster-wide, so each watch has to be
    // scoped; they share the context (client, metrics, backoff) and stop together.
    let listed: Vec<Option<String>> = args
        .namespace
        .into_iter()
        .filter(|ns| !ns.is_empty())
        .map(Some)
        .collect();
    let scopes = if listed.is_empty() { vec![None] } else { listed };
    let controller = futures::future::join_all(
        scopes
            .into_iter()
            .map(|namespace| controller::run(ctx.clone(), namespace, shutdown.clone())),
    );
    let lost = match &election {
        Some(election) => {
            tokio::select! {
                _ = controller => false,
                () = election.hold() => { let _ = lost_tx.send(()); true }
            }
        }
        None => {
            controller.await;
            false
        }
    };
    if let Some(election) = &election {
        election.release().await;
    }
    server.abort();
    if lost { Err(CliError::LostLeadership) } else { Ok(()) }
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    info!("shutting down");
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .json()
        .init();
}
