//! The `metrics` facade sees the same counts, under the OpenMetrics sample names.
#![cfg(feature = "metrics")]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use backstop_core::clock::ManualClock;
use backstop_core::{Admission, Limits};
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};

/// Last value set per `name{labels}`; test code, so a Mutex is fine.
#[derive(Default, Clone)]
struct Values(Arc<Mutex<BTreeMap<String, f64>>>);

struct Cell(String, Values);

impl CounterFn for Cell {
    fn increment(&self, v: u64) {
        *self.1.0.lock().unwrap().entry(self.0.clone()).or_default() += v as f64;
    }
    fn absolute(&self, v: u64) {
        self.1.0.lock().unwrap().insert(self.0.clone(), v as f64);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, v: f64) {
        *self.1.0.lock().unwrap().entry(self.0.clone()).or_default() += v;
    }
    fn decrement(&self, v: f64) {
        *self.1.0.lock().unwrap().entry(self.0.clone()).or_default() -= v;
    }
    fn set(&self, v: f64) {
        self.1.0.lock().unwrap().insert(self.0.clone(), v);
    }
}

fn series(key: &Key) -> String {
    let labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}=\"{}\"", l.key(), l.value()))
        .collect();
    if labels.is_empty() {
        key.name().to_owned()
    } else {
        format!("{}{{{}}}", key.name(), labels.join(","))
    }
}

#[derive(Default)]
struct TestRecorder {
    values: Values,
    described: Mutex<Vec<(String, Option<Unit>)>>,
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.described
            .lock()
            .unwrap()
            .push((key.as_str().to_owned(), unit));
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.described
            .lock()
            .unwrap()
            .push((key.as_str().to_owned(), unit));
    }
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(Arc::new(Cell(series(key), self.values.clone())))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Arc::new(Cell(series(key), self.values.clone())))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn the_facade_gets_every_count_under_its_openmetrics_name() {
    let mut limits = Limits::default();
    limits.rate.limit = 2;
    limits.queue.max = 5;
    let admission = Admission::with_clock(limits, ManualClock::new()).unwrap();
    let _a = admission.try_admit().into_result().unwrap();
    let _b = admission.try_admit().into_result().unwrap();
    assert!(admission.try_admit().refusal().is_some());

    let recorder = TestRecorder::default();
    metrics::with_local_recorder(&recorder, || {
        admission.metrics().publish_to_metrics_facade();
        // Published twice, a counter is set, not added to.
        admission.metrics().publish_to_metrics_facade();
    });
    let values = recorder.values.0.lock().unwrap();
    assert_eq!(values["backstop_admitted_total"], 2.0);
    assert_eq!(values["backstop_rate_limited_total"], 1.0);
    assert_eq!(
        values["backstop_overloaded_total{reason=\"queue_full\"}"],
        0.0
    );
    assert_eq!(values["backstop_queue_depth"], 2.0);
    assert_eq!(values["backstop_resource_gate_state{state=\"open\"}"], 1.0);
    assert!(values.contains_key("backstop_resource_sample_age_seconds"));
    let described = recorder.described.lock().unwrap();
    assert!(described.contains(&(
        "backstop_resource_sample_age_seconds".to_owned(),
        Some(Unit::Seconds)
    )));
}
