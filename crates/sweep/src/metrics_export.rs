//! [`SweepMetrics`] as OpenMetrics families in a `prometheus-client`
//! [`Registry`](prometheus_client::registry::Registry), read at scrape time.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::metrics::{Samples, SweepMetrics};

/// Reads a [`SweepMetrics`] at each scrape of the registry it is registered in.
#[derive(Debug)]
struct SweepCollector(Arc<SweepMetrics>);

fn unit(name: &str) -> Unit {
    match name {
        "seconds" => Unit::Seconds,
        "bytes" => Unit::Bytes,
        other => Unit::Other(other.to_owned()),
    }
}

fn histogram(buckets: &[(f64, u64)], sum: f64, mut encoder: MetricEncoder) -> std::fmt::Result {
    // prometheus-client marks the infinite bucket with `f64::MAX`.
    let buckets: Vec<(f64, u64)> = buckets
        .iter()
        .map(|(upper, n)| (if upper.is_finite() { *upper } else { f64::MAX }, *n))
        .collect();
    let count = buckets.iter().map(|(_, n)| n).sum();
    encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
}

impl Collector for SweepCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        for family in self.0.totals().families() {
            let unit = family.unit.map(unit);
            let kind = match family.samples {
                Samples::Counters(_) => MetricType::Counter,
                Samples::Gauge(_) => MetricType::Gauge,
                Samples::Histogram { .. } => MetricType::Histogram,
            };
            let mut metric =
                encoder.encode_descriptor(family.name, family.help, unit.as_ref(), kind)?;
            match &family.samples {
                Samples::Counters(values) => match family.label {
                    None => {
                        if let Some((_, value)) = values.first() {
                            ConstCounter::new(*value).encode(metric)?;
                        }
                    }
                    Some(key) => {
                        for (label, value) in values {
                            let labels = [(key, label.unwrap_or(""))];
                            ConstCounter::new(*value).encode(metric.encode_family(&labels)?)?;
                        }
                    }
                },
                Samples::Gauge(value) => ConstGauge::new(*value).encode(metric)?,
                Samples::Histogram { buckets, sum } => histogram(buckets, *sum, metric)?,
            }
        }
        Ok(())
    }
}

impl SweepMetrics {
    /// Registers these metrics in a service's `prometheus-client` registry, as
    /// `backstop_sweep_*` OpenMetrics families read at every scrape.
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    /// use backstop_sweep::{Sweep, SweepSchedule};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let schedule = SweepSchedule::new(Sweep::new(dir.path()));
    /// let mut registry = Registry::default();
    /// schedule.metrics().register(&mut registry);
    /// let handle = schedule.start()?;
    ///
    /// let mut text = String::new();
    /// prometheus_client::encoding::text::encode(&mut text, &registry)?;
    /// assert!(text.contains("backstop_sweep_runs_total{outcome=\"clean\"} 0\n"));
    /// assert!(text.contains("# TYPE backstop_sweep_duration_seconds histogram\n"));
    /// assert!(text.contains("backstop_sweep_interval_seconds 21600.0\n"));
    /// handle.shutdown();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        registry.register_collector(Box::new(SweepCollector(Arc::clone(self))));
    }
}
