//! The kernel's side of the metrics, read at scrape time: queries answered
//! by XDP beside those the daemon received, every packet the program saw
//! and why it passed some on, and how full the hot-name maps are.

use std::sync::{Arc, atomic::Ordering};

use dns_common::Counter;
use prometheus::{
    core::{Collector, Desc},
    proto::MetricFamily,
};

use super::{UserspaceCounts, family::Family};
use crate::dataplane::SharedDataplane;

pub struct KernelCollector {
    dataplane: Option<SharedDataplane>,
    userspace: Arc<UserspaceCounts>,
    queries: Family,
    packets: Family,
    passed: Family,
    dropped: Family,
    rate_limited: Family,
    map_entries: Family,
    map_capacity: Family,
}

impl KernelCollector {
    /// `dataplane` is `None` with `--no-xdp`: only the daemon's counts.
    pub fn new(dataplane: Option<SharedDataplane>, userspace: Arc<UserspaceCounts>) -> Self {
        const MAP: &[&str] = &["record_type", "names_up_to"];
        KernelCollector {
            dataplane,
            userspace,
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
            dropped: Family::counter(
                "dnslb_xdp_dropped_total",
                "Packets the XDP program dropped: DNS responses sent to the server's port.",
                &["reason"],
            ),
            rate_limited: Family::counter(
                "dnslb_rate_limited_total",
                "UDP answers over their client network's rate, sent truncated (slipped) or dropped, by where.",
                &["path", "action"],
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
            &self.dropped,
            &self.rate_limited,
            &self.map_entries,
            &self.map_capacity,
        ]
        .into_iter()
        .flat_map(Family::desc)
        .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let count = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed) as f64;
        let userspace = count(&self.userspace.queries);
        let userspace_limited = [
            (
                vec!["userspace", "slipped"],
                count(&self.userspace.rate_slipped),
            ),
            (
                vec!["userspace", "dropped"],
                count(&self.userspace.rate_dropped),
            ),
        ];
        let read = self.dataplane.as_ref().and_then(|dataplane| {
            let dataplane = dataplane.lock().ok()?;
            Some((dataplane.counters().ok()?, dataplane.map_fill()))
        });
        let Some((counters, fill)) = read else {
            let mut families = self.queries.collect([(vec!["userspace"], userspace)]);
            families.extend(self.rate_limited.collect(userspace_limited));
            return families;
        };
        let mut families = self.queries.collect([
            (vec!["xdp"], counters.get(Counter::Answered) as f64),
            (vec!["userspace"], userspace),
        ]);
        let kernel = |counter| counters.get(counter) as f64;
        families.extend(
            self.dropped
                .collect([(vec!["response"], kernel(Counter::DropResponse))]),
        );
        families.extend(
            self.rate_limited.collect(
                [
                    (vec!["xdp", "slipped"], kernel(Counter::RateSlipped)),
                    (vec!["xdp", "dropped"], kernel(Counter::RateDropped)),
                ]
                .into_iter()
                .chain(userspace_limited),
            ),
        );
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
