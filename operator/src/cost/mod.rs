//! `cilvest-operator cost -f pipeline.yaml`: a monthly estimate of what a pipeline as declared costs, in USD and
//! IDR, from one versioned price table (`prices.yaml`, embedded; `--prices` overrides entries).
//!
//! ```text
//!  pipeline ─▶ X API: posts read (posts/day, capped by the read budget) or counts requests per keyword
//!           ─▶ pods: the workers' requests from `build` + Kafka (Strimzi) and search (ECK) when declared
//!              priced on GKE Autopilot (per vCPU- and GiB-hour) or on whole nodes of a named type
//!           ─▶ bus (Kafka in the pods and disks, or Pub/Sub throughput) ─▶ lake ─▶ BigQuery ─▶ transform engine
//! ```
//! Not a quote: list prices, an assumed Jakarta margin, and volumes that are the caller's assumptions.

use std::path::PathBuf;

use cilvest_crds::{
    Bus, CilvestPipeline, Engine, Pipeline,
    values::{budget_posts, parse_usd},
};

use crate::build::{self, BuildOptions};

mod prices;
pub mod profiles;
mod report;
mod requests;

pub use prices::*;
use report::thousands;
pub use report::*;
use requests::{Requests, gib_of, pod_requests};

/// What the original design (one VM) cost a month in 2023, in rupiah.
pub const ORIGINAL_DESIGN_IDR: f64 = 417_514.0;

/// Minutes a native daily job runs (the daily Job's requests are paid only while it runs on Autopilot).
const NATIVE_DAILY_MINUTES: f64 = 10.0;
/// Minutes an ephemeral Dataproc cluster or a Serverless batch lives per daily run.
const DATAPROC_MINUTES: f64 = 15.0;
/// The least DCUs a Dataproc Serverless batch is billed for.
const SERVERLESS_MIN_DCU: f64 = 12.0;
/// Raw NDJSON plus curated Parquet, relative to the raw posts' size.
const LAKE_BYTES_FACTOR: f64 = 1.4;
/// One curated row in BigQuery, bytes.
const BIGQUERY_ROW_BYTES: f64 = 1000.0;
/// Mart tables rebuilt every day, each scanning `tweets`.
const MARTS: f64 = 6.0;
/// Months of data kept when sizing the lake and BigQuery.
const MONTHS_KEPT: f64 = 12.0;
/// Lake writes a month (the consumer's objects and the daily job's; docs/gke.md).
const LAKE_WRITES: f64 = 10_000.0;
/// Boot disk of a Standard node, GB.
const BOOT_DISK_GB: f64 = 50.0;
/// Days in a billing month.
const DAYS: f64 = 730.0 / 24.0;

#[derive(Debug, thiserror::Error)]
pub enum CostError {
    #[error("failed to parse the price table {name}: {message}")]
    Prices { name: String, message: String },
    #[error("the price table has no {0}")]
    MissingPrice(String),
    #[error("unknown node type {0:?}: add it under `machines` with --prices")]
    UnknownMachine(String),
    #[error(transparent)]
    Invalid(#[from] cilvest_crds::InvalidSpec),
    #[error("the {name} profile is not a valid spec: {message}")]
    Profile { name: String, message: String },
}

/// Where the pods run.
#[derive(Clone, Debug, PartialEq)]
pub enum Compute {
    /// GKE Autopilot: Pod requests per second.
    Autopilot,
    /// GKE Standard on enough nodes of this machine type for every request.
    Nodes(String),
}

/// The volumes the estimate assumes.
#[derive(Clone, Debug)]
pub struct Assumptions {
    pub compute: Compute,
    /// Posts the pipeline's search query matches a day.
    pub posts_per_day: f64,
    /// Bytes of one post's envelope (raw JSON).
    pub post_bytes: f64,
}

impl Default for Assumptions {
    fn default() -> Self {
        Self {
            compute: Compute::Autopilot,
            // Cilvest's volume: about 2,000 matching posts a day, about 20 MB of raw JSON.
            posts_per_day: 2000.0,
            post_bytes: 10_000.0,
        }
    }
}

/// The estimate for `pipeline` under `assumptions` at `prices`; an invalid spec is an error naming its fields.
pub fn estimate(pipeline: &CilvestPipeline, assumptions: &Assumptions, prices: &Prices) -> Result<Estimate, CostError> {
    let parsed = Pipeline::new(&pipeline.spec)?;
    let spec = &pipeline.spec;
    let margin = prices.get("jakartaMargin")?;
    let hours = prices.get("hoursPerMonth")?;
    let google = |usd: f64| usd * margin;
    let mut lines = Vec::new();

    // X API: posts read through recent search, or counts requests.
    let x = &spec.source.x;
    let reads_posts = spec.keywords.iter().any(|k| k.mode.reads_posts());
    let price_per_read = parse_usd(&x.price_per_read_usd).unwrap_or(prices.get("xPostRead")?);
    let mut reads = if reads_posts {
        assumptions.posts_per_day * DAYS
    } else {
        0.0
    };
    let mut read_note = format!("{} posts", thousands(reads));
    if let Some(budget) = x
        .monthly_read_budget
        .as_ref()
        .and_then(|b| budget_posts(b, &x.price_per_read_usd))
        && reads > budget as f64
    {
        reads = budget as f64;
        read_note = format!("{} posts (the monthly read budget)", thousands(reads));
    }
    lines.push(Line {
        item: "X API post reads".to_owned(),
        quantity: read_note,
        vendor: Vendor::X,
        usd: reads * price_per_read,
    });
    let counted = spec.keywords.iter().filter(|k| k.mode.counts()).count() as f64;
    let interval_hours = parsed.counts_interval.as_secs_f64() / 3600.0;
    let count_requests = if counted > 0.0 {
        counted * (hours / interval_hours.max(1.0 / 60.0)).ceil()
    } else {
        0.0
    };
    let price_per_count = parse_usd(&x.price_per_count_request_usd).unwrap_or(prices.get("xCountsRecentRequest")?);
    lines.push(Line {
        item: "X API counts requests".to_owned(),
        quantity: format!("{} requests ({counted} keywords)", thousands(count_requests)),
        vendor: Vendor::X,
        usd: count_requests * price_per_count,
    });

    // Pods.
    let resources = build::build(
        pipeline,
        &parsed,
        &BuildOptions {
            worker_image: "cost".to_owned(),
        },
    );
    let workers = pod_requests(resources.producer.spec.as_ref().and_then(|s| s.template.spec.as_ref())).plus(
        pod_requests(resources.consumer.spec.as_ref().and_then(|s| s.template.spec.as_ref())),
    );
    let daily = pod_requests(
        resources
            .daily
            .spec
            .as_ref()
            .and_then(|s| s.job_template.spec.as_ref())
            .and_then(|j| j.template.spec.as_ref()),
    );
    // The operator's own chart defaults.
    let operator = Requests::new(0.05, 0.125);
    let strimzi = spec.bus == Bus::Kafka && spec.kafka.strimzi_cluster.is_some();
    // Strimzi's chart default cluster operator, a one-node dual-role Kafka and the Topic Operator (docs/gke.md).
    let kafka = if strimzi {
        Requests::new(0.2, 0.375)
            .plus(Requests::new(0.25, 1.0))
            .plus(Requests::new(0.1, 0.25))
    } else {
        Requests::default()
    };
    let managed = spec.targets.elasticsearch.as_ref().and_then(|s| s.managed.as_ref());
    // ECK's operator (chart default), Elasticsearch nodes at ECK's default memory and Autopilot's default CPU,
    // Kibana likewise.
    let search = managed.map_or(Requests::default(), |m| {
        let kibana = if m.kibana {
            Requests::new(0.5, 1.0)
        } else {
            Requests::default()
        };
        Requests::new(0.1, 0.146)
            .plus(Requests::new(0.5, 2.0).times(f64::from(m.nodes)))
            .plus(kibana)
    });
    let engine_minutes = match spec.transform.engine {
        Engine::Native => NATIVE_DAILY_MINUTES,
        // The daily Job only waits for Dataproc.
        Engine::Dataproc | Engine::DataprocServerless => DATAPROC_MINUTES,
    };
    let daily_hours = engine_minutes / 60.0 * DAYS;
    let always_on = workers.plus(operator).plus(kafka).plus(search);
    let disks_gb = if strimzi { 10.0 } else { 0.0 } + managed.map_or(0.0, |m| f64::from(m.nodes) * gib_of(&m.storage));
    match &assumptions.compute {
        Compute::Autopilot => {
            let vcpu = prices.get("autopilotVcpuHour")?;
            let gib = prices.get("autopilotGibHour")?;
            let monthly = |r: Requests, h: f64| google((r.cpu * vcpu + r.gib * gib) * h);
            lines.push(Line {
                item: "GKE cluster fee".to_owned(),
                quantity: "one Autopilot cluster, inside the free tier".to_owned(),
                vendor: Vendor::Google,
                usd: google((prices.get("gkeClusterFeeHour")? * hours - prices.get("gkeFreeTierMonth")?).max(0.0)),
            });
            lines.push(Line {
                item: "pods: workers and operator".to_owned(),
                quantity: workers.plus(operator).describe(),
                vendor: Vendor::Google,
                usd: monthly(workers.plus(operator), hours),
            });
            lines.push(Line {
                item: "pods: daily job".to_owned(),
                quantity: format!("{}, {engine_minutes} min a day", daily.describe()),
                vendor: Vendor::Google,
                usd: monthly(daily, daily_hours),
            });
            lines.push(bus_line(
                spec.bus,
                strimzi,
                monthly(kafka, hours),
                kafka,
                assumptions,
                prices,
                margin,
            )?);
            if managed.is_some() {
                lines.push(Line {
                    item: "pods: Elasticsearch and Kibana (ECK)".to_owned(),
                    quantity: search.describe(),
                    vendor: Vendor::Google,
                    usd: monthly(search, hours),
                });
            }
        }
        Compute::Nodes(machine_name) => {
            let machine = prices
                .machines
                .get(machine_name)
                .ok_or_else(|| CostError::UnknownMachine(machine_name.clone()))?;
            // Whole nodes for every request at once (the daily job included), ignoring system reservations.
            let peak = always_on.plus(daily);
            let nodes = (peak.cpu / machine.vcpu)
                .max(peak.gib / machine.memory_gib)
                .ceil()
                .max(1.0);
            lines.push(Line {
                item: "GKE cluster fee".to_owned(),
                quantity: "one zonal Standard cluster, inside the free tier".to_owned(),
                vendor: Vendor::Google,
                usd: google((prices.get("gkeClusterFeeHour")? * hours - prices.get("gkeFreeTierMonth")?).max(0.0)),
            });
            lines.push(Line {
                item: format!("nodes: {machine_name}"),
                quantity: format!("{nodes} x for {} requested", peak.describe()),
                vendor: Vendor::Google,
                usd: google(nodes * machine.usd_hour * hours),
            });
            lines.push(bus_line(spec.bus, strimzi, 0.0, kafka, assumptions, prices, margin)?);
        }
    }
    let boot_gb = match &assumptions.compute {
        Compute::Autopilot => 0.0,
        Compute::Nodes(_) => BOOT_DISK_GB,
    };
    lines.push(Line {
        item: "persistent disks".to_owned(),
        quantity: format!("{:.0} GB balanced", disks_gb + boot_gb),
        vendor: Vendor::Google,
        usd: google((disks_gb + boot_gb) * prices.get("pdBalancedGbMonth")?),
    });

    // The lake and BigQuery, sized after a year of data.
    let posts_per_month = if reads_posts { reads } else { 0.0 };
    let lake_gb = posts_per_month * MONTHS_KEPT * assumptions.post_bytes * LAKE_BYTES_FACTOR / 1e9;
    lines.push(Line {
        item: "lake (Cloud Storage)".to_owned(),
        quantity: format!("{lake_gb:.1} GB after a year, {} writes", thousands(LAKE_WRITES)),
        vendor: Vendor::Google,
        usd: google(
            lake_gb * prices.get("gcsStandardGbMonth")? + LAKE_WRITES / 1000.0 * prices.get("gcsClassAPer1000")?,
        ),
    });
    let table_gib = posts_per_month * MONTHS_KEPT * BIGQUERY_ROW_BYTES / (1u64 << 30) as f64;
    let scanned_tib = table_gib * MARTS * DAYS / 1024.0;
    let storage_usd =
        (table_gib - prices.get("bigqueryFreeStorageGib")?).max(0.0) * prices.get("bigqueryStorageGibMonth")?;
    let query_usd = (scanned_tib - prices.get("bigqueryFreeQueryTib")?).max(0.0) * prices.get("bigqueryQueryTib")?;
    lines.push(Line {
        item: "BigQuery".to_owned(),
        quantity: format!("{table_gib:.2} GiB stored, {:.3} TiB scanned", scanned_tib),
        vendor: Vendor::Google,
        usd: google(storage_usd + query_usd),
    });

    // The transform engine beyond the daily Job's own pod.
    let runs = DAYS;
    let (engine_quantity, engine_usd) = match (&spec.transform.engine, &spec.transform.dataproc) {
        (Engine::Native, _) => ("native, in the daily job's pod".to_owned(), 0.0),
        (Engine::Dataproc, Some(dataproc)) => {
            let master = prices
                .machines
                .get(&dataproc.master_machine_type)
                .ok_or_else(|| CostError::UnknownMachine(dataproc.master_machine_type.clone()))?;
            let worker = prices
                .machines
                .get(&dataproc.worker_machine_type)
                .ok_or_else(|| CostError::UnknownMachine(dataproc.worker_machine_type.clone()))?;
            let workers = f64::from(dataproc.workers);
            let hours_per_run = DATAPROC_MINUTES / 60.0;
            let vcpus = master.vcpu + workers * worker.vcpu;
            let per_run =
                hours_per_run * (vcpus * prices.get("dataprocVcpuHour")? + master.usd_hour + workers * worker.usd_hour);
            (
                format!("{runs:.0} clusters of {vcpus:.0} vCPU x {DATAPROC_MINUTES} min"),
                per_run * runs,
            )
        }
        (Engine::Dataproc, None) => ("dataproc (no cluster settings)".to_owned(), 0.0),
        (Engine::DataprocServerless, _) => {
            let per_run = SERVERLESS_MIN_DCU * DATAPROC_MINUTES / 60.0 * prices.get("dataprocServerlessDcuHour")?;
            (
                format!("{runs:.0} batches of {SERVERLESS_MIN_DCU} DCU x {DATAPROC_MINUTES} min"),
                per_run * runs,
            )
        }
    };
    lines.push(Line {
        item: "transform engine".to_owned(),
        quantity: engine_quantity,
        vendor: Vendor::Google,
        usd: google(engine_usd),
    });

    Ok(Estimate {
        pipeline: format!(
            "{}/{}",
            pipeline.metadata.namespace.as_deref().unwrap_or("default"),
            pipeline.metadata.name.as_deref().unwrap_or("")
        ),
        lines,
        idr_per_usd: prices.get("idrPerUsd")?,
        margin,
        prices_version: prices.version,
        prices_date: prices.date.clone(),
    })
}

/// The bus line: Kafka's pods (already priced into the nodes on Standard), an external Kafka, or Pub/Sub's
/// throughput beyond its free tier.
fn bus_line(
    bus: Bus,
    strimzi: bool,
    kafka_usd: f64,
    kafka: Requests,
    assumptions: &Assumptions,
    prices: &Prices,
    margin: f64,
) -> Result<Line, CostError> {
    Ok(match bus {
        Bus::Kafka if strimzi => Line {
            item: "bus: Kafka (Strimzi, in-cluster)".to_owned(),
            quantity: if kafka_usd > 0.0 {
                format!("pods {}; disk below", kafka.describe())
            } else {
                format!("pods {}, in the nodes above", kafka.describe())
            },
            vendor: Vendor::Google,
            usd: kafka_usd,
        },
        Bus::Kafka => Line {
            item: "bus: Kafka (external)".to_owned(),
            quantity: "not priced: runs outside this cluster".to_owned(),
            vendor: Vendor::Google,
            usd: 0.0,
        },
        Bus::Pubsub => {
            // Every post is published once and delivered once.
            let gib = assumptions.posts_per_day * DAYS * assumptions.post_bytes * 2.0 / (1u64 << 30) as f64;
            let billable_tib = (gib - prices.get("pubsubFreeGib")?).max(0.0) / 1024.0;
            Line {
                item: "bus: Pub/Sub".to_owned(),
                quantity: format!("{gib:.2} GiB published and delivered"),
                vendor: Vendor::Google,
                usd: billable_tib * prices.get("pubsubThroughputTib")? * margin,
            }
        }
    })
}

/// `cost` flags besides the pipeline file.
#[derive(clap::Args, Debug, Clone)]
pub struct CostArgs {
    /// Price the pods on whole nodes of this machine type (GKE Standard), such as e2-standard-2.
    #[arg(long, conflicts_with = "autopilot")]
    pub node_type: Option<String>,
    /// Price the pods on GKE Autopilot (the default).
    #[arg(long)]
    pub autopilot: bool,
    /// A price table whose entries replace the embedded ones (same shape as operator/src/prices.yaml).
    #[arg(long)]
    pub prices: Option<PathBuf>,
    /// Posts the pipeline's search query matches a day.
    #[arg(long, default_value_t = 2000.0)]
    pub posts_per_day: f64,
    /// Bytes of one post as stored raw.
    #[arg(long, default_value_t = 10_000.0)]
    pub post_bytes: f64,
}

impl CostArgs {
    pub fn assumptions(&self) -> Assumptions {
        Assumptions {
            compute: match &self.node_type {
                Some(machine) => Compute::Nodes(machine.clone()),
                None => Compute::Autopilot,
            },
            posts_per_day: self.posts_per_day.max(0.0),
            post_bytes: self.post_bytes.max(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::requests::{cpu_cores, memory_gib};
    use super::*;

    #[test]
    fn quantities_parse() {
        assert!((cpu_cores("50m") - 0.05).abs() < 1e-12);
        assert!((cpu_cores("2") - 2.0).abs() < 1e-12);
        assert!((memory_gib("512Mi") - 0.5).abs() < 1e-12);
        assert!((memory_gib("10Gi") - 10.0).abs() < 1e-12);
        assert_eq!(thousands(417_514.4), "417,514");
        assert_eq!(thousands(999.0), "999");
    }

    #[test]
    fn the_embedded_table_has_a_source_and_date_for_every_price() {
        let prices = Prices::embedded().expect("prices.yaml parses");
        assert!(!prices.prices.is_empty() && !prices.machines.is_empty());
        for (key, price) in &prices.prices {
            assert!(!price.source.is_empty() && !price.date.is_empty(), "{key}");
        }
        for (key, machine) in &prices.machines {
            assert!(!machine.source.is_empty() && !machine.date.is_empty(), "{key}");
        }
        let cheaper = prices
            .with_overrides("test", "prices:\n  xPostRead: {value: 0.001}\n")
            .expect("override");
        assert_eq!(cheaper.prices["xPostRead"].value, 0.001);
        assert!(cheaper.prices.contains_key("autopilotVcpuHour"), "the rest stays");
    }
}
