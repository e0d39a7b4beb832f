//! The metrics port's fake: a recorder that keeps every counter, gauge and histogram
//! value by name and labels, so a test can assert what a handler recorded.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

type Labels = Vec<(String, String)>;

#[derive(Debug, Default)]
struct Values(Mutex<Vec<f64>>);

impl HistogramFn for Values {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

#[derive(Debug, Default)]
struct Registry {
    counters: BTreeMap<(String, Labels), Arc<AtomicU64>>,
    gauges: BTreeMap<(String, Labels), Arc<AtomicU64>>,
    histograms: BTreeMap<(String, Labels), Arc<Values>>,
}

/// What a piece of code recorded. Build one with [`CapturedMetrics::run`].
#[derive(Debug, Clone, Default)]
pub struct CapturedMetrics(Arc<Mutex<Registry>>);

fn key_of(key: &Key) -> (String, Labels) {
    let mut labels: Labels = key
        .labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect();
    labels.sort();
    (key.name().to_owned(), labels)
}

fn wanted(name: &str, labels: &[(&str, &str)]) -> (String, Labels) {
    let mut labels: Labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    (name.to_owned(), labels)
}

impl Recorder for CapturedMetrics {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut registry = self.0.lock().unwrap();
        Counter::from_arc(Arc::clone(
            registry.counters.entry(key_of(key)).or_default(),
        ))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut registry = self.0.lock().unwrap();
        Gauge::from_arc(Arc::clone(registry.gauges.entry(key_of(key)).or_default()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut registry = self.0.lock().unwrap();
        Histogram::from_arc(Arc::clone(
            registry.histograms.entry(key_of(key)).or_default(),
        ))
    }
}

impl CapturedMetrics {
    /// Runs `future` to completion on a current-thread runtime with this thread's
    /// recorder set to a fresh capture (so tests in parallel do not see each other's).
    /// Call it from a plain `#[test]`, not from inside another runtime.
    pub fn run<T>(future: impl Future<Output = T>) -> (T, Self) {
        let captured = Self::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let out = metrics::with_local_recorder(&captured, || runtime.block_on(future));
        (out, captured)
    }

    /// The counter's total (0 if never incremented).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let registry = self.0.lock().unwrap();
        registry
            .counters
            .get(&wanted(name, labels))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// The gauge's last value, if it was ever set.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let registry = self.0.lock().unwrap();
        registry
            .gauges
            .get(&wanted(name, labels))
            .map(|g| f64::from_bits(g.load(Ordering::Relaxed)))
    }

    /// Every value recorded into the histogram.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        let registry = self.0.lock().unwrap();
        registry
            .histograms
            .get(&wanted(name, labels))
            .map(|h| h.0.lock().unwrap().clone())
            .unwrap_or_default()
    }

    /// Every (name, labels) with a non-zero counter: for "nothing else was counted".
    pub fn counted(&self) -> Vec<(String, Labels)> {
        let registry = self.0.lock().unwrap();
        registry
            .counters
            .iter()
            .filter(|(_, c)| c.load(Ordering::Relaxed) > 0)
            .map(|(k, _)| k.clone())
            .collect()
    }
}
