//! What the control API shows of steering: services with their policy
//! trees and the answer each client network gets now, endpoints with
//! health and overrides, the checks, and answers per branch. Read from the
//! same state the answers come from.

use std::sync::atomic::Ordering;

use hickory_proto::rr::RecordType;

use super::{State, Steering, probed_up, view::Steered};
use crate::{
    api::types::{
        BranchAnswers, EndpointInfo, GraphNode, HealthRow, NetworkAnswer, NodeKind, ServiceDetail,
        ServiceInfo,
    },
    config::BranchLabels,
    load::LoadStatus,
    policy::{BranchSlot, ClientNet, Draw, Pick, Policy, Service, Standing},
    zone::WireName,
};

impl Steering {
    pub fn services(&self) -> anyhow::Result<Vec<ServiceInfo>> {
        self.per_service(service_info)
    }

    /// Each service's label and how it answers now.
    pub(super) fn standings(&self) -> anyhow::Result<Vec<(String, Standing)>> {
        self.per_service(|service, steered| (service.label.clone(), standing(service, steered)))
    }

    /// `describe` of each service, with what answers see now.
    fn per_service<T>(&self, describe: impl Fn(&Service, &Steered) -> T) -> anyhow::Result<Vec<T>> {
        let state = self.state.lock()?;
        let steered = self.view(&state);
        Ok(state
            .config
            .services
            .iter()
            .map(|service| describe(service, &steered))
            .collect())
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
        let dataplane = self.lock_dataplane()?;
        let answers = |slot: BranchSlot| self.slot_answers(dataplane.as_deref(), slot);
        let mut graph = GraphBuilder {
            state: &state,
            branches,
            endpoints: &endpoints,
            answers: &answers,
            nodes: Vec::new(),
        };
        let root = graph.add(
            None,
            NodeKind::Name,
            format!("{} {}", service.name.to_name(), service.record_type),
            String::new(),
        );
        graph.policy(&service.policy, root, String::new(), 0);
        let graph = graph.nodes;
        Ok(Some(ServiceDetail {
            service: service_info(service, &steered),
            tree,
            networks,
            endpoints,
            graph,
        }))
    }

    /// The service that answers `name`'s records of `record_type`, and the
    /// branches its answer to `client` comes from now (several, when a
    /// weighted choice between branches is made per query).
    pub fn decided_by(
        &self,
        name: &WireName,
        record_type: RecordType,
        client: ClientNet,
    ) -> anyhow::Result<Option<(String, Vec<String>)>> {
        let state = self.state.lock()?;
        let Some(service) = state
            .config
            .services
            .iter()
            .find(|s| s.name == *name && s.record_type == record_type)
        else {
            return Ok(None);
        };
        let steered = self.view(&state);
        let draw = service.draw(&steered.pools, &steered, Some(client));
        let mut branches: Vec<String> = Vec::new();
        for drawn in draw.drawn() {
            let label = branch_label(&state.config.branches, drawn.branch);
            if !branches.contains(&label) {
                branches.push(label);
            }
        }
        Ok(Some((service.label.clone(), branches)))
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
                    latency_history_ms: s
                        .history
                        .recent()
                        .into_iter()
                        .map(|micros| micros as f64 / 1e3)
                        .collect(),
                    last_failure: s
                        .last_failure
                        .lock()
                        .map(|last| last.clone())
                        .unwrap_or_default(),
                }
            })
            .collect())
    }

    /// Answers per policy branch, the kernel's and userspace's together:
    /// (service, branch, answers).
    pub fn branch_answers(&self) -> anyhow::Result<Vec<BranchAnswers>> {
        let state = self.state.lock()?;
        let dataplane = self.lock_dataplane()?;
        Ok(state
            .config
            .branches
            .iter()
            .map(|(slot, service, branch)| BranchAnswers {
                service: service.to_owned(),
                branch: branch.to_owned(),
                answers: self.slot_answers(dataplane.as_deref(), slot),
            })
            .collect())
    }
}

fn service_info(service: &Service, steered: &Steered) -> ServiceInfo {
    let standing = standing(service, steered);
    ServiceInfo {
        label: service.label.clone(),
        name: service.name.to_name().to_string(),
        record_type: service.record_type.to_string(),
        ttl: service.ttl,
        policy: kind(&service.policy).to_owned(),
        fail_closed: service.fail_closed,
        standing: standing.name().to_owned(),
        standing_reason: standing.reason().to_owned(),
    }
}

/// How `service` answers now: for a client-dependent one, the worst of the
/// client networks it tells apart.
fn standing(service: &Service, steered: &Steered) -> Standing {
    if service.policy.depends_on_client() {
        service
            .client_networks()
            .into_iter()
            .map(|network| service.standing(&steered.pools, steered, Some(network)))
            .max()
            .unwrap_or(Standing::Healthy)
    } else {
        service.standing(&steered.pools, steered, None)
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
    let (what, how) = node_text(policy, state);
    let line = match policy {
        Policy::Pool { branch, .. } => {
            format!("{what}: {how} [{}]", branch_label(branches, *branch))
        }
        Policy::Weighted(_) => format!("{what} {how}"),
        _ => format!("{what} ({how})"),
    };
    out.push(format!("{}{line}", "  ".repeat(depth)));
    for child in policy.children() {
        describe(child, state, branches, depth + 1, out);
    }
}

/// What one node of the tree is, and how it decides, in words.
fn node_text(policy: &Policy, state: &State) -> (String, String) {
    match policy {
        Policy::Pool { pool, pick, .. } => {
            let pick = match pick {
                Pick::Every => "every endpoint".to_owned(),
                Pick::Healthy {
                    answers: usize::MAX,
                } => "every healthy one, rotated".to_owned(),
                Pick::Healthy { answers } => format!("up to {answers} healthy, rotated"),
                Pick::ByWeight => "one by weight".to_owned(),
            };
            (format!("pool {}", pool_name(state, *pool)), pick)
        }
        Policy::Weighted(choices) => {
            let weights: Vec<String> = choices.iter().map(|(w, _)| w.to_string()).collect();
            ("weighted".to_owned(), weights.join(":"))
        }
        Policy::Failover { .. } => ("failover".to_owned(), "primary, then secondary".to_owned()),
        Policy::ByClient { table, .. } => (
            "by client network".to_owned(),
            format!("{} networks", table.networks().count()),
        ),
    }
}

fn pool_name(state: &State, pool: usize) -> &str {
    state
        .config
        .pools
        .get(pool)
        .map_or("?", |p| p.name.as_str())
}

/// Builds a service's graph: the policy nodes below `parent`, each pool
/// with its endpoints, and how each node is reached from its parent.
struct GraphBuilder<'a> {
    state: &'a State,
    branches: &'a BranchLabels,
    endpoints: &'a [EndpointInfo],
    answers: &'a dyn Fn(BranchSlot) -> u64,
    nodes: Vec<GraphNode>,
}

impl GraphBuilder<'_> {
    fn add(&mut self, parent: Option<usize>, kind: NodeKind, label: String, edge: String) -> usize {
        let id = self.nodes.len();
        self.nodes.push(GraphNode {
            id,
            parent,
            kind,
            label,
            detail: String::new(),
            edge,
            branch: None,
            answers: 0,
            endpoint: None,
        });
        id
    }

    /// Adds `policy` (at `depth` below the root) under `parent`.
    fn policy(&mut self, policy: &Policy, parent: usize, edge: String, depth: usize) {
        let (what, how) = node_text(policy, self.state);
        match policy {
            Policy::Pool { pool, branch, .. } => {
                let id = self.add(Some(parent), NodeKind::Pool, what, edge);
                self.nodes[id].detail = how;
                self.nodes[id].branch = Some(branch_label(self.branches, *branch));
                self.nodes[id].answers = (self.answers)(*branch);
                let name = pool_name(self.state, *pool);
                for endpoint in self.endpoints.iter().filter(|e| e.pool == name) {
                    let edge = format!("weight {}", endpoint.weight);
                    let at = self.add(
                        Some(id),
                        NodeKind::Endpoint,
                        endpoint.address.to_string(),
                        edge,
                    );
                    self.nodes[at].endpoint = Some(endpoint.clone());
                    // Where load or slow start weigh it: the weight the
                    // draws use, and the load that made it.
                    if !endpoint.weighing.is_empty() {
                        let load = endpoint
                            .load
                            .map(|load| format!(" · load {load:.2}"))
                            .unwrap_or_default();
                        self.nodes[at].detail =
                            format!("effective {:.2}{load}", endpoint.effective_weight);
                    }
                }
            }
            _ => {
                let id = self.add(Some(parent), NodeKind::Policy, what, edge);
                self.nodes[id].detail = how;
                let weights: Vec<Option<u8>> = match policy {
                    Policy::Weighted(choices) => choices.iter().map(|(w, _)| Some(*w)).collect(),
                    _ => policy.children().map(|_| None).collect(),
                };
                for (child, weight) in policy.children().zip(weights) {
                    let name = self.path_component(child, depth);
                    let edge = match weight {
                        Some(weight) => format!("{name} · weight {weight}"),
                        None => name,
                    };
                    self.policy(child, id, edge, depth + 1);
                }
            }
        }
    }

    /// The name a child at `depth` has in the policy file: its part of the
    /// branch labels below it (`eu`, `primary`, `frankfurt`).
    fn path_component(&self, child: &Policy, depth: usize) -> String {
        let mut leaves = Vec::new();
        child.leaves(&mut leaves);
        leaves
            .first()
            .and_then(|(_, slot)| {
                let label = branch_label(self.branches, *slot);
                label.split('/').nth(depth).map(str::to_owned)
            })
            .unwrap_or_default()
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

pub(super) fn endpoint_rows(
    state: &State,
    mut include: impl FnMut(usize) -> bool,
) -> Vec<EndpointInfo> {
    let now = tokio::time::Instant::now();
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
            let load = match state.config.weighing.get(&pool.name) {
                Some(weighing) => state.load.status(&pool.name, endpoint.addr, weighing, now),
                None => LoadStatus::UNWEIGHED,
            };
            rows.push(EndpointInfo {
                pool: pool.name.clone(),
                address: endpoint.addr,
                weight,
                file_weight: endpoint.weight,
                healthy: probed_up(state.runner.as_ref(), index, e),
                drained,
                condition: endpoint.condition.name().to_owned(),
                load: load.load,
                effective_weight: f64::from(weight) * load.effect.share,
                weighing: load.why,
            });
        }
    }
    rows
}
