//! The price table: embedded `prices.yaml`, with `--prices` overrides.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::CostError;

/// The embedded price table.
pub const PRICES_YAML: &str = include_str!("../prices.yaml");

/// One price, with where and when it was read.
#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct Price {
    pub value: f64,
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub date: String,
}

/// A machine type.
#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub vcpu: f64,
    pub memory_gib: f64,
    pub usd_hour: f64,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub date: String,
}

/// The price table.
#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct Prices {
    pub version: u32,
    pub date: String,
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
    #[serde(default)]
    pub machines: BTreeMap<String, Machine>,
}

/// An override file: any subset of the table.
#[derive(Deserialize, Default)]
struct PricesOverride {
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    prices: BTreeMap<String, Price>,
    #[serde(default)]
    machines: BTreeMap<String, Machine>,
}

impl Prices {
    /// The embedded table.
    pub fn embedded() -> Result<Self, CostError> {
        serde_saphyr::from_str(PRICES_YAML).map_err(|e| CostError::Prices {
            name: "prices.yaml".to_owned(),
            message: e.to_string(),
        })
    }

    /// This table with the entries of `yaml` (same shape) replacing its own.
    pub fn with_overrides(mut self, name: &str, yaml: &str) -> Result<Self, CostError> {
        let overrides: PricesOverride = serde_saphyr::from_str(yaml).map_err(|e| CostError::Prices {
            name: name.to_owned(),
            message: e.to_string(),
        })?;
        self.prices.extend(overrides.prices);
        self.machines.extend(overrides.machines);
        if let Some(version) = overrides.version {
            self.version = version;
        }
        if let Some(date) = overrides.date {
            self.date = date;
        }
        Ok(self)
    }

    pub(super) fn get(&self, key: &str) -> Result<f64, CostError> {
        self.prices
            .get(key)
            .map(|p| p.value)
            .ok_or_else(|| CostError::MissingPrice(key.to_owned()))
    }
}
