//! The steering metrics, read at scrape time: answers per policy branch
//! (kernel and userspace together), services answering by the all-down
//! rule, and the state of every health check.

use std::sync::{Weak, atomic::Ordering};

use prometheus::{
    core::{Collector, Desc},
    proto::MetricFamily,
};

use super::{Steering, report::endpoint_rows};
use crate::{health::InstanceState, metrics::family::Family, policy::Standing};

type Read = fn(&InstanceState) -> f64;

pub struct SteeringCollector {
    /// Weak: the registry must not keep steering (and its checks) alive.
    steering: Weak<Steering>,
    answers: Family,
    failing: Family,
    checks: Vec<(Family, Read)>,
    load: Family,
    effective_weight: Family,
    saturated: Family,
    reads: Family,
}

const CHECK_LABELS: &[&str] = &["check", "pool", "endpoint", "port"];

impl SteeringCollector {
    pub fn new(steering: Weak<Steering>) -> SteeringCollector {
        let checks: [(Family, Read); 5] = [
            (
                Family::gauge(
                    "dnslb_health_check_up",
                    "1 while the check passes on the endpoint (after rise/fall).",
                    CHECK_LABELS,
                ),
                |s| f64::from(u8::from(s.up.load(Ordering::Relaxed))),
            ),
            (
                Family::gauge(
                    "dnslb_health_check_latency_seconds",
                    "Duration of the last probe.",
                    CHECK_LABELS,
                ),
                |s| s.last_latency_us.load(Ordering::Relaxed) as f64 / 1e6,
            ),
            (
                Family::counter(
                    "dnslb_health_check_probes_total",
                    "Probes run.",
                    CHECK_LABELS,
                ),
                |s| s.probes.load(Ordering::Relaxed) as f64,
            ),
            (
                Family::counter(
                    "dnslb_health_check_failures_total",
                    "Probes that failed.",
                    CHECK_LABELS,
                ),
                |s| s.failures.load(Ordering::Relaxed) as f64,
            ),
            (
                Family::counter(
                    "dnslb_health_check_transitions_total",
                    "Changes of the check's verdict.",
                    CHECK_LABELS,
                ),
                |s| s.transitions.load(Ordering::Relaxed) as f64,
            ),
        ];
        SteeringCollector {
            steering,
            answers: Family::counter(
                "dnslb_policy_answers_total",
                "Answers by service and policy branch (kernel and userspace).",
                &["service", "branch"],
            ),
            failing: Family::gauge(
                "dnslb_service_failing",
                "1 while the service has no healthy endpoint to answer with: how=\"open\" while it \
                 answers the failed ones (the all-down rule), how=\"closed\" while it answers none \
                 (fail_closed, or every endpoint drained or not ready).",
                &["service", "how"],
            ),
            checks: checks.into(),
            load: Family::gauge(
                "dnslb_endpoint_load",
                "The endpoint's load (a utilisation, smoothed), while a report counts, in pools \
                 that weigh by load.",
                &["pool", "endpoint"],
            ),
            effective_weight: Family::gauge(
                "dnslb_endpoint_effective_weight",
                "The weight draws use: the configured weight times what load and slow start \
                 leave of it (0: shed), in pools that weigh by load or slow start.",
                &["pool", "endpoint"],
            ),
            reads: Family::counter(
                "dnslb_load_reads_total",
                "Load figures read from endpoints, agents or Prometheus, by pool: result=\"ok\" \
                 for usable ones, \"failed\" for reads that gave none (each cause is logged once \
                 per endpoint).",
                &["pool", "result"],
            ),
            saturated: Family::gauge(
                "dnslb_pool_saturated",
                "1 while every endpoint of the pool that could answer is shed by its load: the \
                 pool answers as if none were.",
                &["pool"],
            ),
        }
    }
}

impl Collector for SteeringCollector {
    fn desc(&self) -> Vec<&Desc> {
        [
            &self.answers,
            &self.failing,
            &self.load,
            &self.effective_weight,
            &self.saturated,
            &self.reads,
        ]
        .into_iter()
        .chain(self.checks.iter().map(|(family, _)| family))
        .flat_map(Family::desc)
        .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(steering) = self.steering.upgrade() else {
            return Vec::new();
        };
        let answers = steering.branch_answers().unwrap_or_default();
        let mut families = self.answers.collect(answers.iter().map(|a| {
            (
                vec![a.service.as_str(), a.branch.as_str()],
                a.answers as f64,
            )
        }));
        let standings = steering.standings().unwrap_or_default();
        families.extend(
            self.failing
                .collect(standings.iter().flat_map(|(service, standing)| {
                    let open = *standing == Standing::FailingOpen;
                    let closed = !standing.answers();
                    [
                        (vec![service.as_str(), "open"], f64::from(u8::from(open))),
                        (
                            vec![service.as_str(), "closed"],
                            f64::from(u8::from(closed)),
                        ),
                    ]
                })),
        );
        let Ok(state) = steering.state.lock() else {
            return families;
        };
        // Pools that weigh by load or slow start: whether saturated, the
        // figures read, and their endpoints' loads and effective weights.
        let weighing = &state.config.weighing;
        families.extend(self.reads.collect(state.load.reads().flat_map(
            |(pool, usable, failed)| {
                [
                    (vec![pool, "ok"], usable as f64),
                    (vec![pool, "failed"], failed as f64),
                ]
            },
        )));
        families.extend(self.saturated.collect(weighing.keys().map(|pool| {
            let saturated = state.load.is_saturated(pool);
            (vec![pool.as_str()], f64::from(u8::from(saturated)))
        })));
        let weighed = endpoint_rows(&state, |p| {
            weighing.contains_key(&state.config.pools[p].name)
        });
        let addresses: Vec<String> = weighed.iter().map(|e| e.address.to_string()).collect();
        let labelled = || {
            weighed
                .iter()
                .zip(&addresses)
                .map(|(e, address)| (vec![e.pool.as_str(), address.as_str()], e))
        };
        families.extend(
            self.load
                .collect(labelled().filter_map(|(labels, e)| Some((labels, e.load?)))),
        );
        families.extend(
            self.effective_weight
                .collect(labelled().map(|(labels, e)| (labels, e.effective_weight))),
        );
        let Some(runner) = &state.runner else {
            return families;
        };
        let instances = runner.instances();
        let labels: Vec<[String; 4]> = instances
            .iter()
            .map(|i| {
                [
                    i.check.clone(),
                    i.pool.clone(),
                    i.target.addr.to_string(),
                    i.target.port.map(|p| p.to_string()).unwrap_or_default(),
                ]
            })
            .collect();
        for (family, read) in &self.checks {
            families.extend(
                family.collect(instances.iter().zip(&labels).map(|(instance, l)| {
                    (
                        l.iter().map(String::as_str).collect(),
                        read(&instance.state),
                    )
                })),
            );
        }
        families
    }
}
