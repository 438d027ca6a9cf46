//! The kernel's side of the metrics, read at scrape time: queries answered
//! by XDP beside those the daemon received, every packet the program saw
//! and why it passed some on, and how full the hot-name maps are.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use dns_common::Counter;
use prometheus::{
    core::{Collector, Desc},
    proto::MetricFamily,
};

use super::family::Family;
use crate::dataplane::SharedDataplane;

pub struct KernelCollector {
    dataplane: Option<SharedDataplane>,
    userspace_queries: Arc<AtomicU64>,
    queries: Family,
    packets: Family,
    passed: Family,
    map_entries: Family,
    map_capacity: Family,
}

impl KernelCollector {
    /// `dataplane` is `None` with `--no-xdp`: only the daemon's count.
    pub fn new(dataplane: Option<SharedDataplane>, userspace_queries: Arc<AtomicU64>) -> Self {
        const MAP: &[&str] = &["record_type", "names_up_to"];
        KernelCollector {
            dataplane,
            userspace_queries,
            queries: Family::counter(
                "dnslb_queries_total",
                "DNS queries answered or handled, by where.",
                &["path"],
            ),
            packets: Family::counter(
                "dnslb_xdp_packets_total",
                "Packets the XDP program saw.",
                &[],
            ),
            passed: Family::counter(
                "dnslb_xdp_passed_total",
                "Packets the XDP program passed to the kernel stack, by reason.",
                &["reason"],
            ),
            map_entries: Family::gauge(
                "dnslb_kernel_map_entries",
                "Names in each kernel hot-name map.",
                MAP,
            ),
            map_capacity: Family::gauge(
                "dnslb_kernel_map_capacity",
                "Names each kernel hot-name map can hold.",
                MAP,
            ),
        }
    }
}

impl Collector for KernelCollector {
    fn desc(&self) -> Vec<&Desc> {
        [
            &self.queries,
            &self.packets,
            &self.passed,
            &self.map_entries,
            &self.map_capacity,
        ]
        .into_iter()
        .flat_map(Family::desc)
        .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let userspace = self.userspace_queries.load(Ordering::Relaxed) as f64;
        let read = self.dataplane.as_ref().and_then(|dataplane| {
            let dataplane = dataplane.lock().ok()?;
            Some((dataplane.counters().ok()?, dataplane.map_fill()))
        });
        let Some((counters, fill)) = read else {
            return self.queries.collect([(vec!["userspace"], userspace)]);
        };
        let mut families = self.queries.collect([
            (vec!["xdp"], counters.get(Counter::Answered) as f64),
            (vec!["userspace"], userspace),
        ]);
        families.extend(self.packets.collect([(vec![], counters.seen() as f64)]));
        families.extend(
            self.passed
                .collect(Counter::ALL.iter().filter_map(|&counter| {
                    Some((vec![counter.pass_reason()?], counters.get(counter) as f64))
                })),
        );
        let sizes: Vec<String> = fill.iter().map(|map| map.names_up_to.to_string()).collect();
        families.extend(
            self.map_entries
                .collect(fill.iter().zip(&sizes).map(|(map, size)| {
                    (
                        vec![map.record_type.as_str(), size.as_str()],
                        map.entries as f64,
                    )
                })),
        );
        families.extend(
            self.map_capacity
                .collect(fill.iter().zip(&sizes).map(|(map, size)| {
                    (
                        vec![map.record_type.as_str(), size.as_str()],
                        f64::from(map.capacity),
                    )
                })),
        );
        families
    }
}
