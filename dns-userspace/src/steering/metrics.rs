//! The steering metrics, read at scrape time: answers per policy branch
//! (kernel and userspace together), services answering by the all-down
//! rule, and the state of every health check.

use std::sync::{Weak, atomic::Ordering};

use prometheus::{
    core::{Collector, Desc},
    proto::MetricFamily,
};

use super::Steering;
use crate::{health::InstanceState, metrics::family::Family, policy::Standing};

type Read = fn(&InstanceState) -> f64;

pub struct SteeringCollector {
    /// Weak: the registry must not keep steering (and its checks) alive.
    steering: Weak<Steering>,
    answers: Family,
    failing: Family,
    checks: Vec<(Family, Read)>,
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
        }
    }
}

impl Collector for SteeringCollector {
    fn desc(&self) -> Vec<&Desc> {
        [&self.answers, &self.failing]
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
