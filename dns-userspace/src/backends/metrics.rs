//! The metrics of pools whose endpoints come and go: whether each source
//! is reachable, its members by condition, and the function pools'
//! invocations, cold starts and instance time.

use prometheus::{
    CounterVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use crate::{
    metrics::registered,
    policy::{Condition, PoolEndpoint},
};

pub struct BackendMetrics {
    source_up: IntGaugeVec,
    members: IntGaugeVec,
    pub invocations: IntCounterVec,
    pub cold_starts: IntCounterVec,
    pub cold_start_seconds: HistogramVec,
    pub instances: IntGaugeVec,
    pub instance_seconds: CounterVec,
}

/// Cold starts from a few milliseconds (a process already on disk) to
/// the ten seconds a heavy container may take.
const COLD_START_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl BackendMetrics {
    pub fn new(registry: &Registry) -> BackendMetrics {
        let opts = Opts::new;
        let valid = "a valid metric definition";
        BackendMetrics {
            source_up: registered(
                registry,
                IntGaugeVec::new(
                    opts(
                        "dnslb_pool_source_up",
                        "1 while the pool's source (the Docker engine) answers; 0 while its last known endpoints are kept.",
                    ),
                    &["pool", "kind"],
                )
                .expect(valid),
            ),
            members: registered(
                registry,
                IntGaugeVec::new(
                    opts(
                        "dnslb_pool_members",
                        "Members of a pool whose endpoints come and go, by condition (ready, starting, draining).",
                    ),
                    &["pool", "condition"],
                )
                .expect(valid),
            ),
            invocations: registered(
                registry,
                IntCounterVec::new(
                    opts(
                        "dnslb_function_invocations_total",
                        "Queries answered for a function pool (kernel and daemon), and cold-start queries.",
                    ),
                    &["pool"],
                )
                .expect(valid),
            ),
            cold_starts: registered(
                registry,
                IntCounterVec::new(
                    opts(
                        "dnslb_function_cold_starts_total",
                        "Instances started by a query while none was running.",
                    ),
                    &["pool"],
                )
                .expect(valid),
            ),
            cold_start_seconds: registered(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "dnslb_function_cold_start_seconds",
                        "From the query that found no instance to the instance being ready and answered.",
                    )
                    .buckets(COLD_START_BUCKETS.to_vec()),
                    &["pool"],
                )
                .expect(valid),
            ),
            instances: registered(
                registry,
                IntGaugeVec::new(
                    opts(
                        "dnslb_function_instances",
                        "Function instances running (starting and ready).",
                    ),
                    &["pool"],
                )
                .expect(valid),
            ),
            instance_seconds: registered(
                registry,
                CounterVec::new(
                    opts(
                        "dnslb_function_instance_seconds_total",
                        "Instance time used: the unit serverless platforms bill by.",
                    ),
                    &["pool"],
                )
                .expect(valid),
            ),
        }
    }

    pub fn source_up(&self, pool: &str, kind: &str, up: bool) {
        self.source_up
            .with_label_values(&[pool, kind])
            .set(i64::from(up));
    }

    pub fn members(&self, pool: &str, members: &[PoolEndpoint]) {
        for condition in [Condition::Ready, Condition::Starting, Condition::Draining] {
            let count = members.iter().filter(|m| m.condition == condition).count();
            self.members
                .with_label_values(&[pool, condition.name()])
                .set(count as i64);
        }
    }
}
