//! [`Metrics`] as OpenMetrics families, read at scrape time: for a `prometheus-client`
//! [`Registry`](prometheus_client::registry::Registry) (feature `prometheus`, on by
//! default) and for the `metrics` facade (feature `metrics`).
//!
//! The admit path keeps its relaxed atomic adds; nothing here runs until an exporter
//! asks. One table ([`families`]) names every counter and gauge family once, with its
//! help, unit and type, so both exporters publish the same names; [`histograms`] names
//! the two histograms, which only the registry exports (the `metrics` facade records
//! observations one by one and cannot take a histogram's buckets).

use crate::histogram::HistogramSnapshot;
use crate::metrics::MetricsSnapshot;
use crate::resources::GateState;

/// Counter or gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// A sample's value, as the atomics hold it.
#[derive(Debug, Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

/// One metric family: `name` without the unit and `_total` suffixes, which OpenMetrics
/// adds (`backstop_resource_sample_age` + `seconds`; `backstop_admitted` → sample
/// `backstop_admitted_total`).
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    unit: Option<&'static str>,
    kind: Kind,
    /// The label key of `samples`, for a family with one series per label value.
    label: Option<&'static str>,
    samples: Vec<(Option<&'static str>, Value)>,
}

fn one(name: &'static str, help: &'static str, kind: Kind, value: Value) -> Family {
    Family {
        name,
        help,
        unit: None,
        kind,
        label: None,
        samples: vec![(None, value)],
    }
}

fn by_reason(name: &'static str, help: &'static str, list: &[(&'static str, u64)]) -> Family {
    Family {
        name,
        help,
        unit: None,
        kind: Kind::Counter,
        label: Some("reason"),
        samples: list
            .iter()
            .map(|(l, v)| (Some(*l), Value::Int(*v)))
            .collect(),
    }
}

fn with_unit(unit: &'static str, family: Family) -> Family {
    Family {
        unit: Some(unit),
        ..family
    }
}

/// A histogram family, in seconds.
#[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
struct HistogramFamily {
    name: &'static str,
    help: &'static str,
    snapshot: HistogramSnapshot,
}

/// The job histograms, when the door's job counters time jobs.
#[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
fn histograms(s: &MetricsSnapshot) -> Vec<HistogramFamily> {
    let mut out = vec![];
    if let Some(snapshot) = &s.queue_waits {
        out.push(HistogramFamily {
            name: "backstop_queue_wait",
            help: "Time from a request's admission to its job's start, observed at the start.",
            snapshot: snapshot.clone(),
        });
    }
    if let Some(snapshot) = &s.run_times {
        out.push(HistogramFamily {
            name: "backstop_job_run",
            help: "Time from a job's start to its finish, observed at the finish.",
            snapshot: snapshot.clone(),
        });
    }
    out
}

/// Every counter and gauge family, valued from one snapshot.
fn families(s: &MetricsSnapshot) -> Vec<Family> {
    let mut out = decision_families(s);
    out.extend(job_families(s));
    out.extend(resource_families(s));
    out
}

/// What the door decided, by outcome and reason, and the rate limit it decided by.
fn decision_families(s: &MetricsSnapshot) -> Vec<Family> {
    use Kind::{Counter, Gauge};
    use Value::{Float, Int};
    let mut out = vec![
        one(
            "backstop_admitted",
            "Requests admitted into the job queue.",
            Counter,
            Int(s.admitted_total),
        ),
        one(
            "backstop_exempt",
            "Exempt requests (health checks, admin), never limited.",
            Counter,
            Int(s.exempt_total),
        ),
        one(
            "backstop_rate_limited",
            "Requests refused with 429: too many in the rate window.",
            Counter,
            Int(s.rate_limited_total),
        ),
        Family {
            label: Some("scope"),
            ..by_reason(
                "backstop_rate_limited_by_scope",
                "Requests refused with 429, by the window that refused (global or per client).",
                &s.rate_limited_by_scope_total,
            )
        },
        by_reason(
            "backstop_overloaded",
            "Requests refused with 503, by reason.",
            &s.overloaded_total,
        ),
        by_reason(
            "backstop_shadow_refusals",
            "Refusals and job waits that shadow mode counted but did not enforce, by reason.",
            &s.shadow_refusals_total,
        ),
        by_reason(
            "backstop_job_waits",
            "Times a queued job could not start yet, by reason.",
            &s.job_waits_total,
        ),
    ];
    if let Some(quota) = s.rate_limit {
        out.push(one(
            "backstop_rate_limit",
            "The global rate limit: admissions allowed per window.",
            Gauge,
            Int(u64::from(quota.limit())),
        ));
        out.push(with_unit(
            "seconds",
            one(
                "backstop_rate_window",
                "The global rate limit's window.",
                Gauge,
                Float(quota.window().as_secs_f64()),
            ),
        ));
    }
    out
}

/// The queue and the job slots.
fn job_families(s: &MetricsSnapshot) -> Vec<Family> {
    use Kind::{Counter, Gauge};
    use Value::Int;
    vec![
        one(
            "backstop_jobs_started",
            "Jobs started.",
            Counter,
            Int(s.jobs_started_total),
        ),
        one(
            "backstop_jobs_finished",
            "Jobs finished (their permit dropped).",
            Counter,
            Int(s.jobs_finished_total),
        ),
        one(
            "backstop_queue_depth",
            "Jobs waiting to start.",
            Gauge,
            Int(u64::from(s.queue_depth)),
        ),
        one(
            "backstop_queue_max",
            "Most jobs allowed to wait.",
            Gauge,
            Int(u64::from(s.queue_max)),
        ),
        one(
            "backstop_jobs_active",
            "Jobs running.",
            Gauge,
            Int(u64::from(s.jobs_active)),
        ),
        one(
            "backstop_jobs_max",
            "Most jobs allowed to run.",
            Gauge,
            Int(u64::from(s.jobs_max)),
        ),
    ]
}

/// The resource gate and its last reading.
fn resource_families(s: &MetricsSnapshot) -> Vec<Family> {
    use Kind::{Counter, Gauge};
    use Value::{Float, Int};
    let mut out = vec![
        Family {
            name: "backstop_resource_gate_state",
            help: "1 for the resource gate's current state, 0 for the others.",
            unit: None,
            kind: Gauge,
            label: Some("state"),
            samples: GateState::ALL
                .iter()
                .map(|g| (Some(g.as_str()), Int(u64::from(*g == s.gate_state))))
                .collect(),
        },
        with_unit(
            "seconds",
            one(
                "backstop_resource_sample_age",
                "Age of the last resource reading.",
                Gauge,
                Float(s.resource_sample_age_ns as f64 / 1e9),
            ),
        ),
        one(
            "backstop_resource_readings",
            "Resource readings fed to the gate.",
            Counter,
            Int(s.resource_readings_total),
        ),
        one(
            "backstop_resource_probe_failures",
            "Failed resource probe reads.",
            Counter,
            Int(s.probe_failures_total),
        ),
    ];
    out.extend(threshold_families(s));
    out.extend(reading_families(s));
    out
}

/// The gate's thresholds, while the gate is enabled.
fn threshold_families(s: &MetricsSnapshot) -> Vec<Family> {
    use Kind::Gauge;
    use Value::{Float, Int};
    let mut out = Vec::new();
    if s.thresholds.enabled {
        out.push(with_unit(
            "bytes",
            one(
                "backstop_min_available_memory",
                "Jobs wait while available memory is below this.",
                Gauge,
                Int(s.thresholds.min_available_memory_bytes),
            ),
        ));
        out.push(with_unit(
            "bytes",
            one(
                "backstop_min_free_disk",
                "Jobs wait while free disk space on the watched path is below this.",
                Gauge,
                Int(s.thresholds.min_free_disk_bytes),
            ),
        ));
        if let Some(max) = s.thresholds.max_memory_pressure_pct {
            out.push(with_unit(
                "percent",
                one(
                    "backstop_max_memory_pressure",
                    "Jobs wait while memory pressure (PSI some avg10) is above this.",
                    Gauge,
                    Float(max),
                ),
            ));
        }
    }
    out
}

/// The last reading's values, once there is one.
fn reading_families(s: &MetricsSnapshot) -> Vec<Family> {
    use Kind::Gauge;
    use Value::{Float, Int};
    let mut out = Vec::new();
    if let Some(reading) = s.resources.reading {
        out.push(with_unit(
            "bytes",
            one(
                "backstop_available_memory",
                "Available memory at the last reading (the cgroup's, if smaller).",
                Gauge,
                Int(reading.available_memory_bytes),
            ),
        ));
        if let Some(free) = reading.free_disk_bytes {
            out.push(with_unit(
                "bytes",
                one(
                    "backstop_free_disk",
                    "Free disk space on the watched path at the last reading.",
                    Gauge,
                    Int(free),
                ),
            ));
        }
        if let Some(pressure) = reading.memory_pressure_pct {
            out.push(with_unit(
                "percent",
                one(
                    "backstop_memory_pressure",
                    "Linux PSI memory some avg10 at the last reading.",
                    Gauge,
                    Float(pressure),
                ),
            ));
        }
    }
    out
}

#[cfg(feature = "prometheus")]
mod prometheus {
    use std::sync::Arc as StdArc;

    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
    use prometheus_client::metrics::MetricType;
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;
    use prometheus_client::registry::{Registry, Unit};

    use super::{Kind, Value, families, histograms};
    use crate::clock::Clock;
    use crate::metrics::Metrics;

    /// Reads a [`Metrics`] at each scrape of the registry it is registered in.
    struct MetricsCollector<C: Clock + 'static>(StdArc<Metrics<C>>);

    impl<C: Clock + 'static> std::fmt::Debug for MetricsCollector<C> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_tuple("MetricsCollector").field(&self.0).finish()
        }
    }

    fn encode_value(kind: Kind, value: Value, encoder: MetricEncoder) -> std::fmt::Result {
        match (kind, value) {
            (Kind::Counter, Value::Int(v)) => ConstCounter::new(v).encode(encoder),
            (Kind::Counter, Value::Float(v)) => ConstCounter::new(v).encode(encoder),
            (Kind::Gauge, Value::Int(v)) => ConstGauge::new(v).encode(encoder),
            (Kind::Gauge, Value::Float(v)) => ConstGauge::new(v).encode(encoder),
        }
    }

    impl<C: Clock + 'static> Collector for MetricsCollector<C> {
        fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
            let snapshot = self.0.snapshot();
            for family in histograms(&snapshot) {
                let metric = encoder.encode_descriptor(
                    family.name,
                    family.help,
                    Some(&Unit::Seconds),
                    MetricType::Histogram,
                )?;
                family.snapshot.encode(metric)?;
            }
            for family in families(&snapshot) {
                let unit = family.unit.map(|u| match u {
                    "seconds" => Unit::Seconds,
                    "bytes" => Unit::Bytes,
                    other => Unit::Other(other.to_owned()),
                });
                let kind = match family.kind {
                    Kind::Counter => MetricType::Counter,
                    Kind::Gauge => MetricType::Gauge,
                };
                let mut metric =
                    encoder.encode_descriptor(family.name, family.help, unit.as_ref(), kind)?;
                let Some(key) = family.label else {
                    if let Some((_, value)) = family.samples.first() {
                        encode_value(family.kind, *value, metric)?;
                    }
                    continue;
                };
                for (label, value) in &family.samples {
                    let labels = [(key, label.unwrap_or(""))];
                    encode_value(family.kind, *value, metric.encode_family(&labels)?)?;
                }
            }
            Ok(())
        }
    }

    impl<C: Clock + 'static> Metrics<C> {
        /// Registers these counters and gauges in a service's `prometheus-client`
        /// registry, as `backstop_*` OpenMetrics families with help and units. The
        /// registry holds a reference and reads the atomics at every scrape: the admit
        /// path does no work for it.
        ///
        /// ```
        /// use prometheus_client::registry::Registry;
        /// use backstop_core::{Admission, Limits};
        /// use backstop_core::clock::ManualClock;
        ///
        /// let admission = Admission::with_clock(Limits::default(), ManualClock::new())?;
        /// let mut registry = Registry::default();
        /// admission.metrics().register(&mut registry);
        ///
        /// let _ticket = admission.try_admit();
        /// let mut text = String::new();
        /// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        /// assert!(text.contains("# TYPE backstop_admitted counter\nbackstop_admitted_total 1\n"));
        /// assert!(text.contains("backstop_overloaded_total{reason=\"queue_full\"} 0\n"));
        /// assert!(text.ends_with("# EOF\n"));
        /// # Ok::<(), backstop_core::ConfigError>(())
        /// ```
        pub fn register(self: &StdArc<Self>, registry: &mut Registry) {
            registry.register_collector(Box::new(MetricsCollector(StdArc::clone(self))));
        }

        /// These metrics alone in the OpenMetrics text format: a registry holding
        /// nothing else, encoded. A service with its own metrics registers into its
        /// registry with [`register`](Self::register) instead.
        pub fn render_prometheus(self: &StdArc<Self>) -> String {
            let mut registry = Registry::default();
            self.register(&mut registry);
            let mut text = String::with_capacity(4096);
            // Writing to a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
            text
        }
    }
}

#[cfg(feature = "metrics")]
impl<C: crate::clock::Clock> crate::metrics::Metrics<C> {
    /// Publishes the current values through the `metrics` facade, to whatever recorder
    /// the service installed (`metrics-exporter-prometheus`, …): counters with
    /// [`absolute`](metrics::Counter::absolute), gauges with `set`, named as the
    /// OpenMetrics samples (`backstop_admitted_total`,
    /// `backstop_resource_sample_age_seconds`). Call it before each scrape or on a
    /// timer; the facade has no pull hook.
    pub fn publish_to_metrics_facade(&self) {
        for family in families(&self.snapshot()) {
            let mut name = family.name.to_owned();
            if let Some(unit) = family.unit {
                name.push('_');
                name.push_str(unit);
            }
            if family.kind == Kind::Counter {
                name.push_str("_total");
            }
            let unit = match family.unit {
                Some("seconds") => Some(metrics::Unit::Seconds),
                Some("bytes") => Some(metrics::Unit::Bytes),
                Some("percent") => Some(metrics::Unit::Percent),
                _ => None,
            };
            let help = family.help;
            for (label, value) in family.samples {
                let labels: Vec<metrics::Label> = match (family.label, label) {
                    (Some(key), Some(label)) => vec![metrics::Label::new(key, label)],
                    _ => Vec::new(),
                };
                match family.kind {
                    Kind::Counter => {
                        if let Some(unit) = unit {
                            metrics::describe_counter!(name.clone(), unit, help);
                        } else {
                            metrics::describe_counter!(name.clone(), help);
                        }
                        let v = match value {
                            Value::Int(v) => v,
                            Value::Float(v) => v as u64,
                        };
                        metrics::counter!(name.clone(), labels).absolute(v);
                    }
                    Kind::Gauge => {
                        if let Some(unit) = unit {
                            metrics::describe_gauge!(name.clone(), unit, help);
                        } else {
                            metrics::describe_gauge!(name.clone(), help);
                        }
                        let v = match value {
                            Value::Int(v) => v as f64,
                            Value::Float(v) => v,
                        };
                        metrics::gauge!(name.clone(), labels).set(v);
                    }
                }
            }
        }
    }
}
