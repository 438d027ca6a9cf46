//! Metric families whose values live elsewhere (the kernel's per-CPU
//! counters, the health checks' atomics) and are read at scrape time: a
//! custom `prometheus` collector builds each family afresh from samples.

use prometheus::{
    CounterVec, GaugeVec, Opts,
    core::{Collector, Desc},
    proto::MetricFamily,
};

/// A counter or gauge family with fixed label names.
pub struct Family {
    kind: Kind,
    opts: Opts,
    labels: &'static [&'static str],
    /// An empty instance, for the descriptor the registry checks.
    template: Box<dyn Collector>,
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

impl Family {
    pub fn counter(name: &str, help: &str, labels: &'static [&'static str]) -> Family {
        Family::new(Kind::Counter, name, help, labels)
    }

    pub fn gauge(name: &str, help: &str, labels: &'static [&'static str]) -> Family {
        Family::new(Kind::Gauge, name, help, labels)
    }

    fn new(kind: Kind, name: &str, help: &str, labels: &'static [&'static str]) -> Family {
        let opts = Opts::new(name, help);
        let template: Box<dyn Collector> = match kind {
            Kind::Counter => Box::new(
                CounterVec::new(opts.clone(), labels).expect("a valid metric name and labels"),
            ),
            Kind::Gauge => Box::new(
                GaugeVec::new(opts.clone(), labels).expect("a valid metric name and labels"),
            ),
        };
        Family {
            kind,
            opts,
            labels,
            template,
        }
    }

    pub fn desc(&self) -> Vec<&Desc> {
        self.template.desc()
    }

    /// The family with these samples: label values (as many as the family
    /// has labels) and the value.
    pub fn collect<'a>(
        &self,
        samples: impl IntoIterator<Item = (Vec<&'a str>, f64)>,
    ) -> Vec<MetricFamily> {
        match self.kind {
            Kind::Counter => {
                let Ok(vec) = CounterVec::new(self.opts.clone(), self.labels) else {
                    return Vec::new();
                };
                for (labels, value) in samples {
                    if let Ok(counter) = vec.get_metric_with_label_values(&labels) {
                        counter.inc_by(value);
                    }
                }
                vec.collect()
            }
            Kind::Gauge => {
                let Ok(vec) = GaugeVec::new(self.opts.clone(), self.labels) else {
                    return Vec::new();
                };
                for (labels, value) in samples {
                    if let Ok(gauge) = vec.get_metric_with_label_values(&labels) {
                        gauge.set(value);
                    }
                }
                vec.collect()
            }
        }
    }
}
