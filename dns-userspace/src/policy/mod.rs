//! Routing policies: which endpoints a client gets for a service.
//!
//! A policy is a tree (failover over weighted pools, latency regions with
//! weighted pools inside, ...). Evaluating it against the current health of
//! the endpoints and the client's network gives a [`Draw`]: what remains to
//! be decided per query, which is only chance (a weighted pick) and
//! rotation. That split is what lets the kernel answer: userspace evaluates
//! the tree whenever health or configuration changes, the kernel draws.

pub mod client;
pub mod geo;

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use hickory_proto::rr::RecordType;

pub use client::{ClientNet, ClientTable, parse_exact_network, parse_network};
pub use geo::{GeoDb, Location, distance_km};

use crate::zone::WireName;

/// Most records a multivalue answer carries, as Route 53.
pub const MULTIVALUE_ANSWERS: usize = 8;

/// A named set of endpoints; every policy leaf is one.
#[derive(Clone, Debug)]
pub struct Pool {
    pub name: String,
    pub endpoints: Vec<PoolEndpoint>,
    /// The health check run against each endpoint, if any; endpoints of a
    /// pool without one are always up.
    pub check: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PoolEndpoint {
    pub addr: IpAddr,
    /// Share of traffic within a pool picked by weight (0..=255).
    pub weight: u8,
    /// Overrides of the check's port and HTTP path for this endpoint.
    pub port: Option<u16>,
    pub path: Option<String>,
    /// What the endpoint's source says of it; only `Ready` ones are
    /// answered, whatever the checks say.
    pub condition: Condition,
    /// A member that joined at run time: its checks must pass `rise`
    /// times before it is answered, rather than counting as up until
    /// their first probe.
    pub starts_down: bool,
    /// What its load and slow start leave of its weight, from 0 to 1
    /// (the `load` module's share); the policy file's endpoints have all
    /// of it.
    pub share: f64,
}

impl PoolEndpoint {
    /// A ready endpoint of weight 1, with the check's own port and path.
    pub fn new(addr: IpAddr) -> PoolEndpoint {
        PoolEndpoint {
            addr,
            weight: 1,
            port: None,
            path: None,
            condition: Condition::Ready,
            starts_down: false,
            share: 1.0,
        }
    }

    /// The weight a draw by weight uses: the configured weight scaled by
    /// the share, in thousandths so that shares keep their precision; a
    /// positive share never rounds a positive weight to 0 (0 is shed).
    pub fn draw_weight(&self) -> u32 {
        let scaled = (f64::from(self.weight) * self.share * f64::from(SHARE_SCALE)).round() as u32;
        if self.weight > 0 && self.share > 0.0 {
            scaled.max(1)
        } else {
            scaled
        }
    }
}

/// The fineness of shares in a draw by weight: a thousandth.
const SHARE_SCALE: u16 = 1000;

/// Where an endpoint is in its life, as its source (a container engine, a
/// registration, a function instance) reports it; as Kubernetes'
/// EndpointSlice conditions. A member that is gone is not listed at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Serving: answered while its checks pass.
    Ready,
    /// Running but not ready yet (a container whose own HEALTHCHECK has
    /// not passed, or says unhealthy): reported, never answered.
    Starting,
    /// Being stopped (a `kill` or `stop` event before `die`): out of the
    /// answers at once, still reported until it is gone.
    Draining,
}

impl Condition {
    pub fn name(self) -> &'static str {
        match self {
            Condition::Ready => "ready",
            Condition::Starting => "starting",
            Condition::Draining => "draining",
        }
    }
}

/// What the daemon knows about endpoint health: `(pool, endpoint)` indices.
pub trait Health {
    fn is_up(&self, pool: usize, endpoint: usize) -> bool;
}

/// Every endpoint up: what a policy answers when everything is down and it
/// does not fail closed (Route 53's behaviour).
pub struct AllUp;

impl Health for AllUp {
    fn is_up(&self, _: usize, _: usize) -> bool {
        true
    }
}

/// How a leaf answers from its pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    /// Every endpoint whatever its health (Route 53's simple policy).
    Every,
    /// Up to `answers` healthy endpoints, order rotated per query.
    Healthy { answers: usize },
    /// One healthy endpoint, drawn by the endpoints' weights.
    ByWeight,
}

/// A `BRANCH_ANSWERS` slot: which branch of which service an answer came
/// from, for `dnslb_policy_answers_total`.
pub type BranchSlot = u16;

#[derive(Clone, Debug)]
pub enum Policy {
    Pool {
        pool: usize,
        pick: Pick,
        branch: BranchSlot,
    },
    /// One branch per query by weight; weight 0 only when all are 0.
    Weighted(Vec<(u8, Policy)>),
    /// The secondary only while the primary has nothing healthy.
    Failover {
        primary: Box<Policy>,
        secondary: Box<Policy>,
    },
    /// The client's network decides the order in which branches are tried
    /// (geolocation, geoproximity, latency, IP-based).
    ByClient {
        table: ClientTable,
        branches: Vec<Policy>,
    },
}

/// One endpoint in a draw, with the branch that put it there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drawn {
    pub addr: IpAddr,
    pub branch: BranchSlot,
}

/// A policy evaluated for some health and client: what is left to chance.
#[derive(Clone, Debug, PartialEq)]
pub enum Draw {
    /// `answers` of `endpoints`, starting at a rotating offset.
    Set {
        endpoints: Vec<Drawn>,
        answers: usize,
    },
    /// One of the draws, by weight (weights are positive).
    Weighted(Vec<(u32, Draw)>),
}

impl Draw {
    pub const EMPTY: Draw = Draw::Set {
        endpoints: Vec::new(),
        answers: 0,
    };

    pub fn is_empty(&self) -> bool {
        match self {
            Draw::Set { endpoints, .. } => endpoints.is_empty(),
            Draw::Weighted(choices) => choices.is_empty(),
        }
    }

    /// Every address the draw can answer with.
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.drawn().map(|drawn| drawn.addr).collect()
    }

    /// Every endpoint the draw can answer with, with its branch.
    pub fn drawn(&self) -> Box<dyn Iterator<Item = Drawn> + '_> {
        match self {
            Draw::Set { endpoints, .. } => Box::new(endpoints.iter().copied()),
            Draw::Weighted(choices) => Box::new(choices.iter().flat_map(|(_, d)| d.drawn())),
        }
    }

    /// The records of one answer: `rotation` picks the start of a set,
    /// `random` (uniform over `u32`) the weighted choices.
    pub fn choose(&self, rotation: usize, random: u32) -> Vec<Drawn> {
        match self {
            Draw::Set { endpoints, answers } => {
                let n = endpoints.len();
                (0..(*answers).min(n))
                    .map(|i| endpoints[(rotation + i) % n])
                    .collect()
            }
            Draw::Weighted(choices) => {
                let total: u64 = choices.iter().map(|(w, _)| u64::from(*w)).sum();
                let mut point = (u64::from(random) * total) >> 32;
                for (weight, draw) in choices {
                    if point < u64::from(*weight) {
                        return draw.choose(rotation, random.rotate_left(13));
                    }
                    point -= u64::from(*weight);
                }
                Vec::new()
            }
        }
    }

    /// The draw as the kernel does it, if it can: one rotated set, or one
    /// endpoint by weight. Nested weights are multiplied out into weights
    /// summing to at most [`KERNEL_WEIGHT_SCALE`]; a weighted choice between
    /// sets of several endpoints has no kernel form.
    pub fn flatten(&self) -> Option<Flat> {
        match self {
            Draw::Set { endpoints, answers } => Some(Flat::Rotate {
                endpoints: endpoints.clone(),
                answers: *answers,
            }),
            Draw::Weighted(_) => {
                let mut leaves = Vec::new();
                self.weighted_leaves(1.0, &mut leaves)?;
                let scaled = leaves
                    .into_iter()
                    .map(|(share, drawn)| {
                        let weight = (share * f64::from(KERNEL_WEIGHT_SCALE)).round();
                        ((weight as u16).max(1), drawn)
                    })
                    .collect();
                Some(Flat::Weighted(scaled))
            }
        }
    }

    fn weighted_leaves(&self, share: f64, out: &mut Vec<(f64, Drawn)>) -> Option<()> {
        match self {
            Draw::Set { endpoints, answers } => match endpoints.as_slice() {
                [only] if *answers == 1 => out.push((share, *only)),
                _ => return None,
            },
            Draw::Weighted(choices) => {
                let total: f64 = choices.iter().map(|(w, _)| f64::from(*w)).sum();
                for (weight, draw) in choices {
                    draw.weighted_leaves(share * f64::from(*weight) / total, out)?;
                }
            }
        }
        Some(())
    }
}

/// What flattened weights add up to: well inside the kernel's 16-bit sums,
/// and fine enough that rounding moves no share by more than 1/60000.
pub const KERNEL_WEIGHT_SCALE: u16 = 60000;

/// A draw in the kernel's terms.
#[derive(Clone, Debug, PartialEq)]
pub enum Flat {
    Rotate {
        endpoints: Vec<Drawn>,
        answers: usize,
    },
    Weighted(Vec<(u16, Drawn)>),
}

impl Policy {
    /// Evaluates the tree for `client` (`None`: a client in no listed
    /// network) against `health`.
    pub fn draw(&self, pools: &[Pool], health: &dyn Health, client: Option<ClientNet>) -> Draw {
        match self {
            Policy::Pool { pool, pick, branch } => {
                let Some(pool_def) = pools.get(*pool) else {
                    return Draw::EMPTY;
                };
                let listed = pool_def.endpoints.iter().enumerate();
                let usable: Vec<(&PoolEndpoint, Drawn)> = listed
                    .filter(|(i, _)| *pick == Pick::Every || health.is_up(*pool, *i))
                    .map(|(_, endpoint)| {
                        let drawn = Drawn {
                            addr: endpoint.addr,
                            branch: *branch,
                        };
                        (endpoint, drawn)
                    })
                    .collect();
                match pick {
                    Pick::Every => Draw::Set {
                        answers: usable.len(),
                        endpoints: usable.into_iter().map(|(_, d)| d).collect(),
                    },
                    Pick::Healthy { answers } => Draw::Set {
                        answers: (*answers).min(usable.len()),
                        endpoints: usable.into_iter().map(|(_, d)| d).collect(),
                    },
                    Pick::ByWeight => weighted(usable.into_iter().map(|(endpoint, drawn)| {
                        let single = Draw::Set {
                            endpoints: vec![drawn],
                            answers: 1,
                        };
                        (endpoint.draw_weight(), single)
                    })),
                }
            }
            Policy::Weighted(branches) => {
                weighted(branches.iter().map(|(weight, policy)| {
                    (u32::from(*weight), policy.draw(pools, health, client))
                }))
            }
            Policy::Failover { primary, secondary } => {
                let first = primary.draw(pools, health, client);
                if first.is_empty() {
                    secondary.draw(pools, health, client)
                } else {
                    first
                }
            }
            Policy::ByClient { table, branches } => {
                let preference = match client {
                    Some(client) => table.preference(client).0,
                    None => table.fallback(),
                };
                preference
                    .iter()
                    .filter_map(|&i| branches.get(i))
                    .map(|branch| branch.draw(pools, health, client))
                    .find(|draw| !draw.is_empty())
                    .unwrap_or(Draw::EMPTY)
            }
        }
    }

    /// The ECS scope for an answer to `client`: the longest client network
    /// any part of the tree decided by (0 when none depends on the client).
    pub fn scope(&self, client: ClientNet) -> u8 {
        self.children()
            .map(|child| child.scope(client))
            .chain(match self {
                Policy::ByClient { table, .. } => Some(table.preference(client).1),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// Every client network some part of the tree tells apart.
    pub fn client_networks(&self, out: &mut HashSet<ClientNet>) {
        if let Policy::ByClient { table, .. } = self {
            out.extend(table.networks());
        }
        for child in self.children() {
            child.client_networks(out);
        }
    }

    pub fn depends_on_client(&self) -> bool {
        matches!(self, Policy::ByClient { .. }) || self.children().any(Policy::depends_on_client)
    }

    /// Every leaf of the tree: its pool and branch slot.
    pub fn leaves(&self, out: &mut Vec<(usize, BranchSlot)>) {
        if let Policy::Pool { pool, branch, .. } = self {
            out.push((*pool, *branch));
        }
        for child in self.children() {
            child.leaves(out);
        }
    }

    /// The pools the tree answers from.
    pub fn pools(&self, out: &mut HashSet<usize>) {
        if let Policy::Pool { pool, .. } = self {
            out.insert(*pool);
        }
        for child in self.children() {
            child.pools(out);
        }
    }

    pub fn children(&self) -> Box<dyn Iterator<Item = &Policy> + '_> {
        match self {
            Policy::Pool { .. } => Box::new(std::iter::empty()),
            Policy::Weighted(branches) => Box::new(branches.iter().map(|(_, p)| p)),
            Policy::Failover { primary, secondary } => {
                Box::new([primary.as_ref(), secondary.as_ref()].into_iter())
            }
            Policy::ByClient { branches, .. } => Box::new(branches.iter()),
        }
    }
}

/// Route 53's weighted rule over the non-empty choices: weight 0 gets
/// traffic only when every weight is 0, and then all share equally.
fn weighted(choices: impl Iterator<Item = (u32, Draw)>) -> Draw {
    let live: Vec<(u32, Draw)> = choices.filter(|(_, draw)| !draw.is_empty()).collect();
    let any_positive = live.iter().any(|(weight, _)| *weight > 0);
    let kept: Vec<(u32, Draw)> = live
        .into_iter()
        .filter_map(|(weight, draw)| match (any_positive, weight) {
            (true, 0) => None,
            (true, weight) => Some((weight, draw)),
            (false, _) => Some((1, draw)),
        })
        .collect();
    if kept.is_empty() {
        Draw::EMPTY
    } else {
        Draw::Weighted(kept)
    }
}

/// A name whose A or AAAA answers a policy decides.
#[derive(Clone, Debug)]
pub struct Service {
    /// The service's key in the policy file, for metrics and logs.
    pub label: String,
    pub name: WireName,
    pub record_type: RecordType,
    pub ttl: u32,
    pub fail_closed: bool,
    pub policy: Policy,
    /// Whether its zone's answers to DO queries are signed: the kernel
    /// passes those on.
    pub signed: bool,
}

impl Service {
    /// The draw for `client`; when nothing is healthy, the draw as if
    /// everything were, unless the service fails closed.
    /// The networks a client-dependent service is answered by: every one
    /// its policy tells apart, and a default for each family
    /// (`::ffff:0:0/96` for IPv4 clients, `::/0` for the rest), so that
    /// every client finds one.
    pub fn client_networks(&self) -> Vec<ClientNet> {
        let mut networks = HashSet::new();
        self.policy.client_networks(&mut networks);
        let defaults = [
            ClientNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            ClientNet::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        ];
        let mut all: Vec<ClientNet> = defaults.to_vec();
        all.extend(
            networks
                .into_iter()
                .filter(|network| !defaults.contains(network)),
        );
        all
    }

    pub fn draw(&self, pools: &[Pool], health: &dyn Health, client: Option<ClientNet>) -> Draw {
        let draw = self.policy.draw(pools, health, client);
        if draw.is_empty() && !self.fail_closed {
            self.policy.draw(pools, &AllUp, client)
        } else {
            draw
        }
    }

    /// Whether `client` is answered from healthy endpoints now, or by the
    /// all-down rule, and then how. `pools` hold only the endpoints that
    /// may be answered at all (not drained, not starting).
    pub fn standing(
        &self,
        pools: &[Pool],
        health: &dyn Health,
        client: Option<ClientNet>,
    ) -> Standing {
        if !self.policy.draw(pools, health, client).is_empty() {
            Standing::Healthy
        } else if self.policy.draw(pools, &AllUp, client).is_empty() {
            Standing::NothingToAnswer
        } else if self.fail_closed {
            Standing::FailingClosed
        } else {
            Standing::FailingOpen
        }
    }
}

/// How a service answers now, from the best to the worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Standing {
    Healthy,
    /// No healthy endpoint: the failed ones are answered (the all-down
    /// rule, Route 53's "all unhealthy means all healthy").
    FailingOpen,
    /// No healthy endpoint, and the service fails closed: none answered.
    FailingClosed,
    /// Nothing could be answered, healthy or not: every endpoint is
    /// drained or not ready. None answered.
    NothingToAnswer,
}

impl Standing {
    /// Whether the service still answers records: healthy or failing open.
    pub fn answers(self) -> bool {
        self <= Standing::FailingOpen
    }

    /// Why, for people: empty when healthy.
    pub fn reason(self) -> &'static str {
        match self {
            Standing::Healthy => "",
            Standing::FailingOpen => {
                "no healthy endpoint: answering the failed ones (the all-down rule)"
            }
            Standing::FailingClosed => {
                "no healthy endpoint, and the service fails closed: answering none"
            }
            Standing::NothingToAnswer => "every endpoint is drained or not ready: answering none",
        }
    }

    /// The API's and the metrics' word for it.
    pub fn name(self) -> &'static str {
        match self {
            Standing::Healthy => "healthy",
            Standing::FailingOpen => "failing open",
            Standing::FailingClosed | Standing::NothingToAnswer => "failing closed",
        }
    }
}

#[cfg(test)]
mod tests;
