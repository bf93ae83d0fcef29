//! Reading the replicas' Prometheus counters around a measured point, for messages and bytes per
//! block by kind.

use std::collections::BTreeMap;

use crate::ops::Testnet;

/// Counter values summed over every replica that answered, by series (`name{labels}`).
#[derive(Clone, Debug, Default)]
pub struct Counters(pub BTreeMap<String, f64>);

impl Counters {
    pub fn scrape(net: &Testnet) -> Counters {
        let mut sums = BTreeMap::new();
        for r in 0..net.n() {
            let Ok(text) = net.http(r, "GET", "/metrics") else {
                continue;
            };
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                let Some((series, value)) = line.rsplit_once(' ') else {
                    continue;
                };
                if let Ok(v) = value.parse::<f64>() {
                    *sums.entry(series.to_string()).or_insert(0.0) += v;
                }
            }
        }
        Counters(sums)
    }

    /// `self - before` for the series of metric `name`, by the value of its `label`.
    pub fn delta_by(&self, before: &Counters, name: &str, label: &str) -> BTreeMap<String, f64> {
        let prefix = format!("{name}{{{label}=\"");
        let mut out = BTreeMap::new();
        for (series, v) in &self.0 {
            let Some(rest) = series.strip_prefix(&prefix) else {
                continue;
            };
            let Some(value) = rest.split('"').next() else {
                continue;
            };
            let was = before.0.get(series).copied().unwrap_or(0.0);
            out.insert(value.to_string(), v - was);
        }
        out
    }
}
