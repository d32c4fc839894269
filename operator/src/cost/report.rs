//! The estimate: its lines by vendor, totals in USD and IDR, and the table `cost -f` prints.

use std::fmt::Write as _;

use super::*;

/// Which bill a line belongs to: Google's lines get the Jakarta margin, X's do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vendor {
    X,
    Google,
}

/// One line of the estimate.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub item: String,
    pub quantity: String,
    pub vendor: Vendor,
    /// USD a month, margin included.
    pub usd: f64,
}

/// The whole estimate.
#[derive(Clone, Debug)]
pub struct Estimate {
    pub pipeline: String,
    pub lines: Vec<Line>,
    pub idr_per_usd: f64,
    pub margin: f64,
    pub prices_version: u32,
    pub prices_date: String,
}

impl Estimate {
    pub fn total_usd(&self) -> f64 {
        self.lines.iter().map(|l| l.usd).sum()
    }

    /// The line named `item`.
    pub fn line(&self, item: &str) -> Option<&Line> {
        self.lines.iter().find(|l| l.item == item)
    }

    /// The estimate as a text table.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Monthly estimate for {} (prices v{} of {}; Google lines at us-central1 list prices x {:.2} for \
             Jakarta; Rp {} per USD)",
            self.pipeline,
            self.prices_version,
            self.prices_date,
            self.margin,
            thousands(self.idr_per_usd)
        );
        let _ = writeln!(out, "{:<38} {:<46} {:>10} {:>14}", "item", "quantity", "USD", "Rp");
        for line in &self.lines {
            let _ = writeln!(
                out,
                "{:<38} {:<46} {:>10.2} {:>14}",
                line.item,
                line.quantity,
                line.usd,
                thousands(line.usd * self.idr_per_usd)
            );
        }
        let total = self.total_usd();
        let _ = writeln!(
            out,
            "{:<38} {:<46} {:>10.2} {:>14}",
            "total",
            "",
            total,
            thousands(total * self.idr_per_usd)
        );
        let _ = writeln!(
            out,
            "{:<38} {:<46} {:>10.2} {:>14}",
            "original design (one VM, 2023)",
            format!(
                "this estimate is {:.1} x it",
                total * self.idr_per_usd / ORIGINAL_DESIGN_IDR
            ),
            ORIGINAL_DESIGN_IDR / self.idr_per_usd,
            thousands(ORIGINAL_DESIGN_IDR)
        );
        out
    }
}

/// A number with thousands separators, rounded to a whole unit.
pub(super) fn thousands(value: f64) -> String {
    let rounded = value.round().max(0.0) as u64;
    let digits = rounded.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}
