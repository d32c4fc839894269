//! The workers' resource requests, read back from the pods `build` renders.

use k8s_openapi::api::core::v1::PodSpec;

/// CPU cores and GiB of memory requested.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Requests {
    pub(super) cpu: f64,
    pub(super) gib: f64,
}

impl Requests {
    pub(super) fn new(cpu: f64, gib: f64) -> Self {
        Self { cpu, gib }
    }

    pub(super) fn plus(self, other: Self) -> Self {
        Self::new(self.cpu + other.cpu, self.gib + other.gib)
    }

    pub(super) fn times(self, n: f64) -> Self {
        Self::new(self.cpu * n, self.gib * n)
    }

    pub(super) fn describe(self) -> String {
        format!("{:.2} vCPU, {:.2} GiB", self.cpu, self.gib)
    }
}

/// Kubernetes CPU quantity (`50m`, `1`) in cores.
pub(super) fn cpu_cores(text: &str) -> f64 {
    match text.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().unwrap_or(0.0) / 1000.0,
        None => text.parse().unwrap_or(0.0),
    }
}

/// Kubernetes memory quantity (`64Mi`, `1Gi`, `512M`) in GiB.
pub(super) fn memory_gib(text: &str) -> f64 {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    let units: [(&str, f64); 6] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", GIB),
        ("K", 1e3),
        ("M", 1e6),
        ("G", 1e9),
    ];
    for (suffix, factor) in units {
        if let Some(number) = text.strip_suffix(suffix) {
            return number.parse::<f64>().unwrap_or(0.0) * factor / GIB;
        }
    }
    text.parse::<f64>().unwrap_or(0.0) / GIB
}

pub(super) fn pod_requests(spec: Option<&PodSpec>) -> Requests {
    let Some(spec) = spec else {
        return Requests::default();
    };
    spec.containers
        .iter()
        .filter_map(|c| c.resources.as_ref()?.requests.as_ref())
        .fold(Requests::default(), |total, requests| {
            let cpu = requests.get("cpu").map_or(0.0, |q| cpu_cores(&q.0));
            let gib = requests.get("memory").map_or(0.0, |q| memory_gib(&q.0));
            total.plus(Requests::new(cpu, gib))
        })
}

pub(super) fn gib_of(quantity: &str) -> f64 {
    memory_gib(quantity)
}
