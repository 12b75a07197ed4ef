//! [`StoreMetrics`] as `backstop_store_*` OpenMetrics families in a `prometheus-client`
//! [`Registry`], read at scrape time (feature `prometheus`, on by default).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::metrics::{StoreMetrics, StoreMetricsSnapshot};
use crate::store::RedisStore;

/// Reads a store's [`StoreMetrics`] at each scrape.
#[derive(Debug)]
struct StoreCollector(Arc<StoreMetrics>);

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

/// The store's counters: name, help, value.
fn counters(s: &StoreMetricsSnapshot) -> [(&'static str, &'static str, u64); 10] {
    [
        (
            "backstop_store_decisions",
            "Decisions Redis made.",
            s.store_decisions,
        ),
        (
            "backstop_store_errors",
            "Store calls that failed with an error (connection, wrong type, server error).",
            s.store_errors,
        ),
        (
            "backstop_store_timeouts",
            "Store calls that passed their deadline.",
            s.timeouts,
        ),
        (
            "backstop_store_fallback_decisions",
            "Rate decisions the local fallback window made while the store failed.",
            s.fallback_decisions,
        ),
        (
            "backstop_store_lease_renewals",
            "Queue place and job slot leases renewed (re-assertions included).",
            s.lease_renewals,
        ),
        (
            "backstop_store_lease_renewal_failures",
            "Lease renewals that failed or passed the deadline (tried again).",
            s.lease_renewal_failures,
        ),
        (
            "backstop_store_leases_reasserted",
            "Leases written again after Redis lost them (a restart without persistence).",
            s.leases_reasserted,
        ),
        (
            "backstop_store_leases_lost",
            "Tickets and permits whose lease was lost (their holders were told).",
            s.leases_lost,
        ),
        (
            "backstop_store_detached_unclaimed",
            "Detached tickets nobody claimed in time, found by this replica.",
            s.detached_unclaimed,
        ),
        (
            "backstop_store_refusals_cached",
            "Rate limited refusals answered from the refusal cache, without a round trip.",
            s.refusals_cached,
        ),
    ]
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        for (name, help, value) in counters(&self.0.snapshot()) {
            counter(&mut encoder, name, help, value)?;
        }
        let failing = encoder.encode_descriptor(
            "backstop_store_failing",
            "1 while the store's last call failed, 0 once a call answers.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(self.0.failing())).encode(failing)?;
        let histogram = encoder.encode_descriptor(
            "backstop_store_round_trip",
            "Store calls Redis answered, from sending to the answer.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        self.0.round_trips().encode(histogram)
    }
}

impl RedisStore {
    /// Registers the store's counters (errors, timeouts, fallback decisions, leases),
    /// whether it is failing, and its round-trip histogram in a service's
    /// `prometheus-client` registry, as `backstop_store_*` families read at each scrape.
    /// Every stage made from this store (clones included) counts into them.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(StoreCollector(Arc::clone(&self.inner.metrics))));
    }
}
