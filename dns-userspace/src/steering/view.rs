//! The services as the responder sees them at answer time: the policies,
//! a snapshot of health, and the branch counters userspace answers add to.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use hickory_proto::rr::RecordType;

use crate::{
    backends::{ColdStart, ColdStartMode},
    dataplane::RrsetSigner,
    policy::{ClientNet, Draw, Health, Pick, Policy, Pool, Service},
    zone::WireName,
};

/// Answers counted per branch slot by userspace (the kernel counts its own).
#[derive(Debug)]
pub struct BranchCounters(Vec<AtomicU64>);

impl Default for BranchCounters {
    fn default() -> Self {
        BranchCounters(
            (0..dns_common::BRANCH_SLOTS)
                .map(|_| AtomicU64::new(0))
                .collect(),
        )
    }
}

impl BranchCounters {
    fn count(&self, slot: u16) {
        if let Some(counter) = self.0.get(usize::from(slot)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn get(&self, slot: u16) -> u64 {
        self.0
            .get(usize::from(slot))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// The services as the responder sees them: policies and a snapshot of
/// health, replaced whole on every change.
#[derive(Debug, Default)]
pub struct Steered {
    pub(super) pools: Vec<Pool>,
    pub(super) health: Vec<Vec<bool>>,
    pub(super) services: HashMap<WireName, Vec<Service>>,
    pub(super) counters: Arc<BranchCounters>,
    /// By service label: the services waiting for a function pool.
    pub(super) cold: HashMap<String, ColdService>,
}

/// A service whose function pool has no instance ready.
#[derive(Debug, Clone)]
pub struct ColdService {
    pub(super) start: Arc<ColdStart>,
    /// Index of the fallback pool, if the function pool names one.
    pub(super) fallback: Option<usize>,
    /// Queries wait for the start: the pool holds, and the service has
    /// nothing else to answer with.
    pub(super) hold: bool,
}

impl Health for Steered {
    fn is_up(&self, pool: usize, endpoint: usize) -> bool {
        self.health
            .get(pool)
            .and_then(|endpoints| endpoints.get(endpoint))
            .copied()
            .unwrap_or(true)
    }
}

/// One answer from a service.
#[derive(Debug, PartialEq, Eq)]
pub struct SteeredAnswer {
    pub addrs: Vec<IpAddr>,
    pub ttl: u32,
    /// The ECS scope to answer with, for a client-dependent service.
    pub scope: Option<u8>,
    /// Nothing to answer with while a function pool starts: SERVFAIL, so
    /// that the resolver asks again rather than caching a negative answer.
    pub servfail: bool,
}

impl Steered {
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Whether some service answers at `name` (lowercase wire form).
    pub fn has_name(&self, name: &[u8]) -> bool {
        self.services.contains_key(name)
    }

    /// The types services answer at `name`.
    pub fn types_at(&self, name: &[u8]) -> Vec<RecordType> {
        self.services
            .get(name)
            .map(|services| services.iter().map(|service| service.record_type).collect())
            .unwrap_or_default()
    }

    fn service(&self, name: &[u8], record_type: RecordType) -> Option<&Service> {
        self.services
            .get(name)?
            .iter()
            .find(|service| service.record_type == record_type)
    }

    /// The answer for `client`, if a service owns `name`/`record_type`;
    /// `rotation` advances only when one does and a client `asked`.
    pub fn answer(
        &self,
        name: &[u8],
        record_type: RecordType,
        client: ClientNet,
        rotation: &AtomicUsize,
        asked: Asked,
    ) -> Option<SteeredAnswer> {
        let service = self.service(name, record_type)?;
        let mut draw = service.draw(&self.pools, self, Some(client));
        let mut ttl = service.ttl;
        let cold = self.cold.get(&service.label);
        if let Some(cold) = cold {
            if asked == Asked::ByClient {
                cold.start.wake();
            }
            if draw.is_empty() {
                // Not cached: the instance is on its way.
                ttl = 0;
                draw = self.cold_draw(cold, Some(client));
            }
        }
        let turn = match asked {
            Asked::ByClient => rotation.fetch_add(1, Ordering::Relaxed),
            Asked::BySimulation => rotation.load(Ordering::Relaxed),
        };
        let chosen = draw.choose(turn, fastrand::u32(..));
        if let Some(first) = chosen.first()
            && asked == Asked::ByClient
        {
            self.counters.count(first.branch);
        }
        let depends = service.policy.depends_on_client();
        let v4 = record_type == RecordType::A;
        let addrs: Vec<IpAddr> = chosen
            .iter()
            .map(|drawn| drawn.addr)
            .filter(|addr| addr.is_ipv4() == v4)
            .collect();
        Some(SteeredAnswer {
            servfail: cold.is_some() && addrs.is_empty(),
            addrs,
            ttl,
            scope: depends.then(|| service.policy.scope(client)),
        })
    }

    /// What each service within `apex` answers a client its policy knows
    /// nothing of (no listed network), as a copy of the zone for another
    /// server holds it: every endpoint that client may be given now,
    /// healthy ones first as the policy draws them, sorted. A copy cannot
    /// weigh, rotate or tell clients apart; it can leave out what is down.
    pub fn standing_answers<'a>(
        &'a self,
        apex: &'a [u8],
    ) -> impl Iterator<Item = (&'a WireName, RecordType, u32, Vec<IpAddr>)> + 'a {
        self.services
            .iter()
            .filter(move |(name, _)| crate::zone::wire::is_within(name.as_bytes(), apex))
            .flat_map(|(name, services)| services.iter().map(move |service| (name, service)))
            .map(|(name, service)| {
                let mut draw = service.draw(&self.pools, self, None);
                if draw.is_empty()
                    && let Some(cold) = self.cold.get(&service.label)
                {
                    draw = self.cold_draw(cold, None);
                }
                let v4 = service.record_type == RecordType::A;
                let mut addrs: Vec<IpAddr> = draw
                    .drawn()
                    .map(|drawn| drawn.addr)
                    .filter(|addr| addr.is_ipv4() == v4)
                    .collect();
                addrs.sort();
                addrs.dedup();
                (name, service.record_type, service.ttl, addrs)
            })
    }

    /// While a function pool starts: its fallback pool's healthy
    /// endpoints, unless the pool answers SERVFAIL or names no fallback.
    fn cold_draw(&self, cold: &ColdService, client: Option<ClientNet>) -> Draw {
        match (cold.start.mode, cold.fallback) {
            (ColdStartMode::Servfail, _) | (_, None) => Draw::EMPTY,
            (_, Some(fallback)) => Policy::Pool {
                pool: fallback,
                pick: Pick::Healthy {
                    answers: usize::MAX,
                },
                branch: 0,
            }
            .draw(&self.pools, self, client),
        }
    }

    /// Whether any service holds its queries for a cold start: when none
    /// does, the servers skip looking.
    pub fn holds_any(&self) -> bool {
        self.cold.values().any(|cold| cold.hold)
    }

    /// The cold start a query for `name`/`record_type` should wait for.
    pub fn hold(&self, name: &[u8], record_type: RecordType) -> Option<Arc<ColdStart>> {
        let service = self.service(name, record_type)?;
        let cold = self.cold.get(&service.label)?;
        cold.hold.then(|| cold.start.clone())
    }
}

/// Who asks for an answer: a client, whose answer counts (branch
/// counters, the round-robin turn, waking a cold start), or the console's
/// simulator, whose answer changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked {
    ByClient,
    BySimulation,
}

/// Where steering publishes the userspace view, and learns who signs
/// the services' answers.
pub trait SteeredSink: Send + Sync {
    fn set_steered(&self, steered: Steered);

    /// The signer of the zone `name` (lowercase wire form) is in, when
    /// dnslb signs it online: the kernel answers the services there with
    /// its signatures.
    fn signer_for(&self, _name: &[u8]) -> Option<Arc<dyn RrsetSigner + Send + Sync>> {
        None
    }
}
