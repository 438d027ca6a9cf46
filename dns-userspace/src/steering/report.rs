//! What the control API shows of steering: services with their policy
//! trees and the answer each client network gets now, endpoints with
//! health and overrides, the checks, and answers per branch. Read from the
//! same state the answers come from.

use std::sync::atomic::Ordering;

use super::{State, Steering};
use crate::{
    api::types::{EndpointInfo, HealthRow, NetworkAnswer, ServiceDetail, ServiceInfo},
    config::BranchLabels,
    policy::{ClientNet, Draw, Health, Pick, Policy, Service},
};

impl Steering {
    pub fn services(&self) -> anyhow::Result<Vec<ServiceInfo>> {
        let state = self.state.lock()?;
        Ok(state.config.services.iter().map(service_info).collect())
    }

    /// The service labelled `label`, if there is one.
    pub fn service(&self, label: &str) -> anyhow::Result<Option<ServiceDetail>> {
        let state = self.state.lock()?;
        let Some(service) = state.config.services.iter().find(|s| s.label == label) else {
            return Ok(None);
        };
        let steered = self.view(&state);
        let branches = &state.config.branches;
        let mut tree = Vec::new();
        describe(&service.policy, &state, branches, 0, &mut tree);
        let networks = if service.policy.depends_on_client() {
            service
                .client_networks()
                .into_iter()
                .map(|network| answer_for(service, &steered, branches, Some(network)))
                .collect()
        } else {
            vec![answer_for(service, &steered, branches, None)]
        };
        let mut used = std::collections::HashSet::new();
        service.policy.pools(&mut used);
        let endpoints = endpoint_rows(&state, |pool| used.contains(&pool));
        Ok(Some(ServiceDetail {
            service: service_info(service),
            tree,
            networks,
            endpoints,
        }))
    }

    /// Every endpoint of every pool (or of the pool named `pool`).
    pub fn endpoints(&self, pool: Option<&str>) -> anyhow::Result<Vec<EndpointInfo>> {
        let state = self.state.lock()?;
        Ok(endpoint_rows(&state, |index| {
            pool.is_none_or(|name| state.config.pools[index].name == name)
        }))
    }

    /// Every check on every endpoint it probes.
    pub fn health(&self) -> anyhow::Result<Vec<HealthRow>> {
        let state = self.state.lock()?;
        let Some(runner) = &state.runner else {
            return Ok(Vec::new());
        };
        Ok(runner
            .instances()
            .iter()
            .map(|instance| {
                let s = &instance.state;
                let transition = s.last_transition.load(Ordering::Relaxed);
                HealthRow {
                    check: instance.check.clone(),
                    pool: instance.pool.clone(),
                    address: instance.target.addr,
                    port: instance.target.port,
                    up: s.up.load(Ordering::Relaxed),
                    last_latency_ms: s.last_latency_us.load(Ordering::Relaxed) as f64 / 1e3,
                    last_transition: (transition != 0).then_some(transition),
                    failures_in_row: s.failures_in_row.load(Ordering::Relaxed),
                    probes: s.probes.load(Ordering::Relaxed),
                }
            })
            .collect())
    }

    /// Answers per policy branch, the kernel's and userspace's together:
    /// (service, branch, answers).
    pub fn branch_answers(&self) -> anyhow::Result<Vec<(String, String, u64)>> {
        let state = self.state.lock()?;
        let dataplane = match &self.dataplane {
            Some(dataplane) => Some(dataplane.lock()?),
            None => None,
        };
        Ok(state
            .config
            .branches
            .iter()
            .map(|(slot, service, branch)| {
                let kernel = dataplane
                    .as_ref()
                    .and_then(|d| d.branch_answers(slot).ok())
                    .unwrap_or(0);
                (
                    service.to_owned(),
                    branch.to_owned(),
                    kernel + self.counters.get(slot),
                )
            })
            .collect())
    }
}

fn service_info(service: &Service) -> ServiceInfo {
    ServiceInfo {
        label: service.label.clone(),
        name: service.name.to_name().to_string(),
        record_type: service.record_type.to_string(),
        ttl: service.ttl,
        policy: kind(&service.policy).to_owned(),
        fail_closed: service.fail_closed,
    }
}

fn kind(policy: &Policy) -> &'static str {
    match policy {
        Policy::Pool {
            pick: Pick::Every, ..
        } => "simple",
        Policy::Pool {
            pick: Pick::Healthy { .. },
            ..
        } => "healthy endpoints, rotated",
        Policy::Pool {
            pick: Pick::ByWeight,
            ..
        } => "weighted endpoints",
        Policy::Weighted(_) => "weighted",
        Policy::Failover { .. } => "failover",
        Policy::ByClient { .. } => "by client network",
    }
}

/// One line per node of the tree, indented two spaces a level.
fn describe(
    policy: &Policy,
    state: &State,
    branches: &BranchLabels,
    depth: usize,
    out: &mut Vec<String>,
) {
    let indent = "  ".repeat(depth);
    let line = match policy {
        Policy::Pool { pool, pick, branch } => {
            let pool = state
                .config
                .pools
                .get(*pool)
                .map_or("?", |p| p.name.as_str());
            let pick = match pick {
                Pick::Every => "every endpoint".to_owned(),
                Pick::Healthy {
                    answers: usize::MAX,
                } => "every healthy one, rotated".to_owned(),
                Pick::Healthy { answers } => format!("up to {answers} healthy, rotated"),
                Pick::ByWeight => "one by weight".to_owned(),
            };
            format!(
                "{indent}pool {pool}: {pick} [{}]",
                branch_label(branches, *branch)
            )
        }
        Policy::Weighted(choices) => {
            let weights: Vec<String> = choices.iter().map(|(w, _)| w.to_string()).collect();
            format!("{indent}weighted {}", weights.join(":"))
        }
        Policy::Failover { .. } => format!("{indent}failover (primary, then secondary)"),
        Policy::ByClient { table, .. } => {
            format!(
                "{indent}by client network ({} networks)",
                table.networks().count()
            )
        }
    };
    out.push(line);
    for child in policy.children() {
        describe(child, state, branches, depth + 1, out);
    }
}

pub(super) fn branch_label(branches: &BranchLabels, slot: u16) -> String {
    branches
        .iter()
        .find(|(s, _, _)| *s == slot)
        .map_or_else(String::new, |(_, _, branch)| branch.to_owned())
}

/// What `service` answers a client of `network` now (`None`: any client).
fn answer_for(
    service: &Service,
    steered: &super::Steered,
    branches: &BranchLabels,
    network: Option<ClientNet>,
) -> NetworkAnswer {
    let draw = service.draw(&steered.pools, steered, network);
    // A weighted choice between branches is made per query: no one branch.
    let branch = match &draw {
        Draw::Weighted(_) => "by weight, per query".to_owned(),
        Draw::Set { endpoints, .. } => endpoints
            .first()
            .map(|drawn| branch_label(branches, drawn.branch))
            .unwrap_or_default(),
    };
    NetworkAnswer {
        network: network.map_or_else(|| "any".to_owned(), |n| n.to_string()),
        branch,
        addresses: draw.addresses(),
    }
}

fn endpoint_rows(state: &State, mut include: impl FnMut(usize) -> bool) -> Vec<EndpointInfo> {
    let mut rows = Vec::new();
    for (index, pool) in state.config.pools.iter().enumerate() {
        if !include(index) {
            continue;
        }
        for (e, endpoint) in pool.endpoints.iter().enumerate() {
            let weight = state
                .overrides
                .weight(pool, endpoint.addr)
                .unwrap_or(endpoint.weight);
            let drained = state.overrides.is_drained(pool, e);
            rows.push(EndpointInfo {
                pool: pool.name.clone(),
                address: endpoint.addr,
                weight,
                file_weight: endpoint.weight,
                healthy: state.runner.as_ref().is_none_or(|r| r.is_up(index, e)),
                drained,
                condition: endpoint.condition.name().to_owned(),
            });
        }
    }
    rows
}
