//! Traffic steering at run time: the policy file's services, kept in step
//! with endpoint health and the operator's overrides in both places that
//! answer — the kernel's maps and the daemon's responder.
//!
//! Health verdicts arrive as events; the steering task gathers what arrived
//! together, re-evaluates the services that use the affected pools, writes
//! their kernel values (`dataplane::KernelServices`) and swaps in a new
//! userspace view (`view`). A verdict reaches the answers within one pass
//! of that task: microseconds for a handful of services.

mod metrics;
mod overrides;
mod report;
mod view;

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{Arc, MutexGuard, Weak},
    time::Duration,
};

use dns_common::HotName;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::Instant,
};

pub use self::{
    metrics::SteeringCollector,
    overrides::{EndpointRef, OverrideError, Overrides},
    view::{Asked, BranchCounters, ColdService, Steered, SteeredAnswer, SteeredSink},
};
use crate::{
    anycast::AnycastSpec,
    backends::{ColdStart, ColdStartMode, PoolSink},
    cluster::FleetVotes,
    config::{BranchLabels, Config},
    dataplane::{Dataplane, HotType, KernelServices, RrsetSigner, SharedDataplane},
    file_error::FileError,
    health::{HealthEvent, HealthRunner, VerdictScope},
    hooks::{Event, Hooks},
    load::{
        LoadBook, LoadSource, LoadSpec, Reading, ReadingError, ReportError,
        pull::{self, LoadSink},
    },
    policy::{BranchSlot, Condition, Health, Pool, PoolEndpoint, Service},
    shared::Shared,
    zone::{Catalog, WireName},
};

/// The share of the fleet's nodes that must see an endpoint of `pool`
/// healthy, when its check takes the fleet's verdict.
fn fleet_fraction(config: &Config, pool: &Pool) -> Option<f64> {
    let check = config.checks.get(pool.check?)?;
    match check.verdict {
        VerdictScope::Fleet { min_fraction } => Some(min_fraction),
        VerdictScope::Local => None,
    }
}

/// Whether this node's own probes see endpoint `e` of pool `p` up (an
/// endpoint without a check always is).
fn probed_up(runner: Option<&HealthRunner>, p: usize, e: usize) -> bool {
    runner.is_none_or(|r| r.is_up(p, e))
}

/// Held for every change and every report. Lock order: whoever needs
/// both takes this before the dataplane (`SharedDataplane`), never after.
struct State {
    config: Config,
    runner: Option<HealthRunner>,
    kernel: KernelServices,
    overrides: Overrides,
    /// The other nodes' health verdicts, in a fleet.
    fleet: FleetVotes,
    /// The branches each service answers from (for clients in no listed
    /// network), to tell a failover when they change.
    serving: HashMap<String, Vec<BranchSlot>>,
    /// Services whose answers could not be written into the kernel (a map
    /// full, say): the kernel passes their queries to the daemon until a
    /// retry succeeds.
    unwritten: HashSet<String>,
    /// The endpoints' loads and slow starts, and the shares of their
    /// weights in effect.
    load: LoadBook,
}

impl State {
    /// Whether endpoint `e` of pool `p` may be answered at all (ready, not
    /// drained by the operator) and then whether it is up: by this node's
    /// checks, or the fleet's verdict where its check takes that.
    fn standing(&self, p: usize, e: usize) -> Option<bool> {
        let pool = &self.config.pools[p];
        let endpoint = &pool.endpoints[e];
        if endpoint.condition != Condition::Ready || self.overrides.is_drained(pool, e) {
            return None;
        }
        let here = probed_up(self.runner.as_ref(), p, e);
        Some(match fleet_fraction(&self.config, pool) {
            Some(fraction) => self
                .fleet
                .verdict(&pool.name, endpoint.addr, here, fraction),
            None => here,
        })
    }

    /// A pushed load `reading` for `address` of `pool`, if it would be
    /// taken (the pool's load source is `push`, the endpoint one of its
    /// own), and how the pool weighs it.
    fn pushed(
        &self,
        pool: &str,
        address: IpAddr,
        reading: Result<Reading, ReadingError>,
    ) -> Result<(Reading, LoadSpec), ReportError> {
        let known = self.config.pools.iter().find(|p| p.name == pool);
        let known = known.ok_or_else(|| ReportError::NoPool(pool.to_owned()))?;
        let spec = match self.config.weighing.get(pool).and_then(|w| w.load.as_ref()) {
            None => return Err(ReportError::NoLoad(pool.to_owned())),
            Some(spec) if spec.source != LoadSource::Push => {
                return Err(ReportError::Pulled {
                    pool: pool.to_owned(),
                    kind: spec.source.name(),
                });
            }
            Some(spec) => spec.clone(),
        };
        if !known.endpoints.iter().any(|e| e.addr == address) {
            return Err(ReportError::NoEndpoint {
                pool: pool.to_owned(),
                address,
            });
        }
        let reading = reading.map_err(|reading| ReportError::Reading {
            pool: pool.to_owned(),
            address,
            reading,
        })?;
        Ok((reading, spec))
    }

    /// Brings the shares in effect up to `now`; the indices of the pools
    /// whose shares moved.
    fn settle_load(&mut self, now: Instant) -> HashSet<usize> {
        let pools: Vec<(usize, Vec<(IpAddr, bool)>)> = self
            .config
            .pools
            .iter()
            .enumerate()
            .filter(|(_, pool)| self.config.weighing.contains_key(&pool.name))
            .map(|(p, pool)| {
                let endpoints = (0..pool.endpoints.len())
                    .map(|e| (pool.endpoints[e].addr, self.standing(p, e) == Some(true)))
                    .collect();
                (p, endpoints)
            })
            .collect();
        let State { config, load, .. } = self;
        let moved = load.settle(
            now,
            pools.into_iter().map(|(p, endpoints)| {
                let name = config.pools[p].name.as_str();
                (name, &config.weighing[name], endpoints)
            }),
        );
        config
            .pools
            .iter()
            .enumerate()
            .filter(|(_, pool)| moved.contains(&pool.name))
            .map(|(p, _)| p)
            .collect()
    }
}

/// How often services that could not be written into the kernel are
/// tried again.
const RETRY_UNWRITTEN: Duration = Duration::from_secs(1);

/// The running steering: configuration, checks, overrides, and the task
/// applying verdicts.
pub struct Steering {
    state: Shared<State>,
    sink: Arc<dyn SteeredSink>,
    dataplane: Option<SharedDataplane>,
    counters: Arc<BranchCounters>,
    events: mpsc::UnboundedSender<HealthEvent>,
    hooks: Arc<Hooks>,
    /// The function pools' cold-start handles, by pool name.
    cold_starts: Shared<HashMap<String, Arc<ColdStart>>>,
    /// Counts every change of what is answered (health, overrides,
    /// members, configuration, zones), for the console's live views.
    changes: watch::Sender<u64>,
    /// The tasks reading pools' load figures, by pool, with what they read.
    pulls: Shared<HashMap<String, (LoadSpec, JoinHandle<()>)>>,
    /// Itself, for the tasks it starts.
    me: Weak<Steering>,
}

impl Steering {
    /// Starts the checks of `config`, publishes its services and spawns the
    /// task that follows health changes. Call from within the runtime.
    /// `overrides` are the operator's drains and weights to start with.
    pub fn start(
        config: Config,
        sink: Arc<dyn SteeredSink>,
        dataplane: Option<SharedDataplane>,
        hooks: Arc<Hooks>,
        overrides: Overrides,
    ) -> anyhow::Result<Arc<Steering>> {
        let (events, mut received) = mpsc::unbounded_channel();
        let runner = HealthRunner::start(&config.checks, &config.pools, None, events.clone())?;
        let steering = Arc::new_cyclic(|me| Steering {
            state: Shared::new(
                "the steering state",
                State {
                    config,
                    runner: Some(runner),
                    kernel: KernelServices::default(),
                    overrides,
                    fleet: FleetVotes::default(),
                    serving: HashMap::new(),
                    unwritten: HashSet::new(),
                    load: LoadBook::default(),
                },
            ),
            sink,
            dataplane,
            counters: Arc::new(BranchCounters::default()),
            events,
            hooks,
            cold_starts: Shared::new("the cold-start handles", HashMap::new()),
            changes: watch::Sender::new(0),
            pulls: Shared::new("the load readers", HashMap::new()),
            me: me.clone(),
        });
        steering.apply(None)?;
        steering.restart_pulls()?;
        let task = Arc::downgrade(&steering);
        tokio::spawn(async move {
            let mut retry = tokio::time::interval(RETRY_UNWRITTEN);
            loop {
                let first = tokio::select! {
                    event = received.recv() => match event {
                        Some(event) => event,
                        None => return,
                    },
                    _ = retry.tick() => {
                        let Some(steering) = task.upgrade() else {
                            return;
                        };
                        steering.retry_unwritten();
                        if let Err(error) = tokio::task::block_in_place(|| steering.follow_load()) {
                            tracing::error!("applying load and slow start: {error:#}");
                        }
                        continue;
                    }
                };
                let Some(steering) = task.upgrade() else {
                    return;
                };
                let mut pools = HashSet::new();
                let mut event = Some(first);
                while let Some(HealthEvent { pool, addr, up, .. }) = event {
                    pools.insert(pool);
                    steering.hooks.emit(Event::Health {
                        pool: steering.pool_name(pool),
                        endpoint: addr,
                        up,
                    });
                    event = received.try_recv().ok();
                }
                let applied = tokio::task::block_in_place(|| steering.apply(Some(&pools)));
                if let Err(error) = applied {
                    tracing::error!("applying a health change: {error:#}");
                }
            }
        });
        Ok(steering)
    }

    /// Replaces the configuration: checks restart (keeping the verdicts of
    /// the checks that stay), vanished services leave the kernel, and every
    /// service is written anew. Overrides carry over; those whose endpoint
    /// is gone are dropped.
    pub fn reload(&self, mut config: Config) -> anyhow::Result<()> {
        let mut state = self.state.lock()?;
        // Pools whose members come from elsewhere keep the members they
        // have; their sources report any change themselves.
        for pool in &mut config.pools {
            if config.sources.contains_key(&pool.name)
                && let Some(old) = state.config.pools.iter().find(|p| p.name == pool.name)
            {
                pool.endpoints = old.endpoints.clone();
            }
        }
        let runner = HealthRunner::start(
            &config.checks,
            &config.pools,
            state.runner.as_ref(),
            self.events.clone(),
        )?;
        // The old checks stop before the new verdicts are used.
        state.runner = Some(runner);
        // A service is gone when nothing answers its name and type under
        // its label any more (a renamed service leaves its old name).
        let kept: HashSet<(&str, &WireName, _)> = config
            .services
            .iter()
            .map(|s| (s.label.as_str(), &s.name, s.record_type))
            .collect();
        let gone: Vec<Service> = state
            .config
            .services
            .iter()
            .filter(|s| !kept.contains(&(s.label.as_str(), &s.name, s.record_type)))
            .cloned()
            .collect();
        if let Some(dataplane) = &self.dataplane {
            let mut dataplane = dataplane.lock()?;
            for service in &gone {
                state.kernel.remove(&mut dataplane, service)?;
            }
        }
        state.overrides.retain_known(&config.pools);
        state.config = config;
        drop(state);
        self.restart_pulls()?;
        self.apply(None)
    }

    /// Starts reading the load of every pool that pulls it, keeping the
    /// readers whose pool reads as before and stopping the others.
    fn restart_pulls(&self) -> anyhow::Result<()> {
        let wanted: HashMap<String, LoadSpec> = self
            .state
            .lock()?
            .config
            .weighing
            .iter()
            .filter_map(|(pool, weighing)| {
                let spec = weighing.load.as_ref()?;
                spec.interval().map(|_| (pool.clone(), spec.clone()))
            })
            .collect();
        let mut pulls = self.pulls.lock()?;
        pulls.retain(|pool, (spec, task)| {
            let keep = wanted.get(pool) == Some(spec);
            if !keep {
                task.abort();
            }
            keep
        });
        for (pool, spec) in wanted {
            if pulls.contains_key(&pool) {
                continue;
            }
            let sink: Weak<dyn LoadSink> = self.me.clone();
            let task = pull::spawn(pool.clone(), spec.clone(), sink);
            pulls.insert(pool, (spec, task));
        }
        Ok(())
    }

    /// Changes the operator's overrides with `change`, and has `keep`
    /// record the result before it takes effect; if either fails (an
    /// unknown endpoint or pool, a state directory that cannot be written)
    /// nothing changes. Applied at once to both places that answer.
    pub fn change_overrides<E>(
        &self,
        change: impl FnOnce(&mut Overrides, &[Pool]) -> Result<(), OverrideError>,
        keep: impl FnOnce(&Overrides) -> Result<(), E>,
    ) -> anyhow::Result<()>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        {
            let mut state = self.state.lock()?;
            let State {
                config, overrides, ..
            } = &mut *state;
            let mut changed = overrides.clone();
            change(&mut changed, &config.pools)?;
            keep(&changed)?;
            *overrides = changed;
        }
        self.apply(None)
    }

    /// The operator's drains and weights now.
    pub fn overrides(&self) -> anyhow::Result<Overrides> {
        Ok(self.state.lock()?.overrides.clone())
    }

    /// The pools of the configuration, as the policy file has them.
    pub fn pools(&self) -> anyhow::Result<Vec<Pool>> {
        Ok(self.state.lock()?.config.pools.clone())
    }

    /// Changes what the other nodes of the fleet see of the endpoints, and
    /// applies it to both places that answer.
    pub fn change_fleet_votes(&self, change: impl FnOnce(&mut FleetVotes)) -> anyhow::Result<()> {
        {
            let mut state = self.state.lock()?;
            let before = state.fleet.clone();
            change(&mut state.fleet);
            if state.fleet == before {
                return Ok(());
            }
        }
        self.apply(None)
    }

    /// This node's own verdicts on the endpoints whose checks take the
    /// fleet's verdict: what it publishes to the other nodes.
    pub fn local_verdicts(&self) -> anyhow::Result<Vec<(String, IpAddr, bool)>> {
        let state = self.state.lock()?;
        let Some(runner) = &state.runner else {
            return Ok(Vec::new());
        };
        let mut verdicts = Vec::new();
        for (p, pool) in state.config.pools.iter().enumerate() {
            if fleet_fraction(&state.config, pool).is_none() {
                continue;
            }
            for (e, endpoint) in pool.endpoints.iter().enumerate() {
                verdicts.push((pool.name.clone(), endpoint.addr, runner.is_up(p, e)));
            }
        }
        Ok(verdicts)
    }

    /// The configuration's anycast addresses, if any.
    pub fn anycast(&self) -> anyhow::Result<Option<AnycastSpec>> {
        Ok(self.state.lock()?.config.anycast.clone())
    }

    /// The first of `pools` without an endpoint this node's own checks see
    /// healthy (ready and not drained), if any.
    pub fn unhealthy_pool<'a>(&self, pools: &'a [String]) -> anyhow::Result<Option<&'a str>> {
        let state = self.state.lock()?;
        let healthy = |name: &str| {
            let Some(p) = state.config.pools.iter().position(|pool| pool.name == name) else {
                return false;
            };
            let pool = &state.config.pools[p];
            pool.endpoints.iter().enumerate().any(|(e, endpoint)| {
                endpoint.condition == Condition::Ready
                    && probed_up(state.runner.as_ref(), p, e)
                    && !state.overrides.is_drained(pool, e)
            })
        };
        Ok(pools.iter().map(String::as_str).find(|name| !healthy(name)))
    }

    /// Every service `catalog` cannot have it answer for ([`unanswerable_services`]).
    pub fn unanswerable_services(&self, catalog: &Catalog) -> anyhow::Result<Vec<FileError>> {
        Ok(unanswerable_services(&self.state.lock()?.config, catalog))
    }

    /// The names and types the services own now.
    pub fn steered_names(&self) -> anyhow::Result<HashSet<(WireName, HotType)>> {
        Ok(steered_names(&self.state.lock()?.config))
    }

    /// The labels of the current branch slots, for the next config load.
    pub fn branch_labels(&self) -> BranchLabels {
        self.state
            .lock()
            .map(|state| state.config.branches.clone())
            .unwrap_or_default()
    }

    /// What answers see for `state`: the pools with their weight
    /// overrides, and health with drained endpoints down.
    fn view(&self, state: &State) -> Steered {
        let State {
            config,
            overrides,
            load,
            ..
        } = state;
        // Members that are starting or draining, and endpoints the
        // operator drained, are not in the answers at all, not even when a
        // policy answers "everything" because nothing is healthy: they are
        // left out of the pools the policies see.
        // So are endpoints shed by their load (unless every one is, when
        // the load book gives them all their whole weight back); the
        // others draw by their share of their weight.
        let mut pools = overrides.weigh(&config.pools);
        let mut health = Vec::with_capacity(pools.len());
        for (p, pool) in pools.iter_mut().enumerate() {
            let mut up = Vec::with_capacity(pool.endpoints.len());
            let mut index = 0;
            pool.endpoints.retain_mut(|endpoint| {
                let e = index;
                index += 1;
                let effect = load.effect(&pool.name, endpoint.addr);
                endpoint.share = effect.share;
                match state.standing(p, e) {
                    Some(here_or_fleet) if !effect.is_shed() => {
                        up.push(here_or_fleet);
                        true
                    }
                    _ => false,
                }
            });
            health.push(up);
        }
        let mut services: HashMap<WireName, Vec<Service>> = HashMap::new();
        for service in &config.services {
            services
                .entry(service.name.clone())
                .or_default()
                .push(service.clone());
        }
        let mut steered = Steered {
            pools,
            health,
            services,
            counters: self.counters.clone(),
            cold: HashMap::new(),
        };
        // Services with a function pool that has nothing ready: their
        // queries wake it, and get what its cold start says meanwhile. A
        // query waits (`hold`) only when the service has nothing else to
        // answer with (a failover's secondary answers at once).
        let cold_starts = self
            .cold_starts
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        for service in &config.services {
            let mut used = HashSet::new();
            service.policy.pools(&mut used);
            let waiting = used.into_iter().find_map(|p| {
                let start = cold_starts.get(&steered.pools[p].name)?;
                steered.pools[p].endpoints.is_empty().then_some(start)
            });
            if let Some(start) = waiting {
                let fallback = start
                    .fallback
                    .as_ref()
                    .and_then(|name| steered.pools.iter().position(|p| p.name == *name));
                let hold = start.mode == ColdStartMode::Hold
                    && service.draw(&steered.pools, &steered, None).is_empty();
                steered.cold.insert(
                    service.label.clone(),
                    ColdService {
                        start: start.clone(),
                        fallback,
                        hold,
                    },
                );
            }
        }
        steered
    }

    /// The name of pool `index`, for logs and events.
    fn pool_name(&self, index: usize) -> String {
        self.state
            .lock()
            .ok()
            .and_then(|state| state.config.pools.get(index).map(|p| p.name.clone()))
            .unwrap_or_default()
    }

    /// Replaces the members of `pool`. The checks restart only when the
    /// set of targets changed (carrying every verdict over); a change of
    /// condition alone (draining, say) is applied at once.
    fn replace_members(&self, pool: &str, members: Vec<PoolEndpoint>) -> anyhow::Result<()> {
        let mut state = self.state.lock()?;
        let Some(index) = state.config.pools.iter().position(|p| p.name == pool) else {
            return Ok(());
        };
        let current = &state.config.pools[index].endpoints;
        if *current == members {
            return Ok(());
        }
        let targets = |endpoints: &[PoolEndpoint]| -> Vec<_> {
            endpoints
                .iter()
                .map(|e| (e.addr, e.port, e.path.clone()))
                .collect()
        };
        let same_targets = targets(current) == targets(&members);
        state.config.pools[index].endpoints = members;
        if !same_targets {
            let runner = HealthRunner::start(
                &state.config.checks,
                &state.config.pools,
                state.runner.as_ref(),
                self.events.clone(),
            )?;
            state.runner = Some(runner);
        }
        drop(state);
        self.apply(Some(&HashSet::from([index])))
    }

    /// Answers given from `pool` so far, the kernel's and the daemon's.
    pub fn pool_answers(&self, pool: &str) -> anyhow::Result<u64> {
        let slots: Vec<BranchSlot> = {
            let state = self.state.lock()?;
            let Some(index) = state.config.pools.iter().position(|p| p.name == pool) else {
                return Ok(0);
            };
            let mut leaves = Vec::new();
            for service in &state.config.services {
                service.policy.leaves(&mut leaves);
            }
            leaves
                .into_iter()
                .filter(|(p, _)| *p == index)
                .map(|(_, slot)| slot)
                .collect()
        };
        let dataplane = self.lock_dataplane()?;
        Ok(slots
            .into_iter()
            .map(|slot| self.slot_answers(dataplane.as_deref(), slot))
            .sum())
    }

    /// The dataplane, locked, if there is one. Lock order: the steering
    /// state (if needed) first.
    fn lock_dataplane(&self) -> anyhow::Result<Option<MutexGuard<'_, Dataplane>>> {
        Ok(match &self.dataplane {
            Some(dataplane) => Some(dataplane.lock()?),
            None => None,
        })
    }

    /// Answers from branch `slot` so far: the kernel's (from `dataplane`,
    /// locked by the caller) and the daemon's.
    fn slot_answers(&self, dataplane: Option<&Dataplane>, slot: BranchSlot) -> u64 {
        let kernel = dataplane
            .and_then(|d| d.branch_answers(slot).ok())
            .unwrap_or(0);
        kernel + self.counters.get(slot)
    }

    /// Re-evaluates the services that use `pools` (all with `None`).
    fn apply(&self, pools: Option<&HashSet<usize>>) -> anyhow::Result<()> {
        let mut state = self.state.lock()?;
        let moved = state.settle_load(Instant::now());
        self.apply_settled(state, pools, moved)
    }

    /// [`Steering::apply`] with the load book settled in `state`: the
    /// pools whose shares that `moved` go out with this change, whatever
    /// pools it is for.
    fn apply_settled(
        &self,
        mut state: MutexGuard<'_, State>,
        pools: Option<&HashSet<usize>>,
        moved: HashSet<usize>,
    ) -> anyhow::Result<()> {
        let pools = match pools {
            Some(pools) if !moved.is_subset(pools) => Some(pools | &moved),
            Some(pools) => Some(pools.clone()),
            None => None,
        };
        let pools = pools.as_ref();
        let steered = self.view(&state);
        let affected = |service: &Service| {
            pools.is_none_or(|pools| {
                let mut used = HashSet::new();
                service.policy.pools(&mut used);
                !used.is_disjoint(pools)
            })
        };
        self.note_failovers(&mut state, &steered, &affected);
        self.write_kernel(&mut state, &steered, &|service| affected(service))?;
        self.sink.set_steered(steered);
        drop(state);
        self.notify_change();
        Ok(())
    }

    /// Tells whoever follows [`Steering::changes`] that answers changed.
    pub fn notify_change(&self) {
        self.changes.send_modify(|count| *count += 1);
    }

    /// Follows changes of what is answered: the count of them so far.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Writes the `chosen` services' answers into the kernel. One that
    /// cannot be written is passed to the daemon instead (so that no stale
    /// kernel answer contradicts the daemon's) and tried again later.
    fn write_kernel(
        &self,
        state: &mut State,
        steered: &Steered,
        chosen: &dyn Fn(&Service) -> bool,
    ) -> anyhow::Result<()> {
        let Some(dataplane) = &self.dataplane else {
            return Ok(());
        };
        let mut dataplane = dataplane.lock()?;
        let State {
            config,
            kernel,
            unwritten,
            ..
        } = state;
        for service in config.services.iter().filter(|s| chosen(s)) {
            // A service waiting for a function pool is answered by the
            // daemon, even where another branch could answer in the
            // kernel: its queries are what wakes the pool.
            let written = if steered.cold.contains_key(&service.label) {
                kernel.pass_to_daemon(&mut dataplane, service)
            } else {
                let signer = match service.signed {
                    true => self.sink.signer_for(service.name.as_bytes()),
                    false => None,
                };
                let signer = signer.as_deref().map(|signer| signer as &dyn RrsetSigner);
                kernel.write(&mut dataplane, service, (&steered.pools, steered), signer)
            };
            match written {
                Ok(()) => {
                    if unwritten.remove(&service.label) {
                        tracing::info!("service {}: written into the kernel again", service.label);
                    }
                }
                Err(error) => {
                    if unwritten.insert(service.label.clone()) {
                        tracing::error!(
                            "service {}: cannot write its answers into the kernel ({error}); \
                             the daemon answers it until they can be",
                            service.label
                        );
                    }
                    // Replacing the name's value needs no new entry; if
                    // even that fails, the name is not in the kernel.
                    if let Err(error) = kernel.pass_to_daemon(&mut dataplane, service) {
                        tracing::debug!(
                            "service {}: passing to the daemon: {error}",
                            service.label
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes again, with new signatures, the services whose signatures
    /// in the kernel are due at `now` (all of them when `keys_changed`).
    pub fn renew_signatures(&self, now: u64, keys_changed: bool) -> anyhow::Result<()> {
        let mut state = self.state.lock()?;
        if keys_changed {
            state.kernel.renew_all_signatures();
        }
        let due = state.kernel.signatures_due(now);
        if due.is_empty() {
            return Ok(());
        }
        let steered = self.view(&state);
        self.write_kernel(&mut state, &steered, &|service| {
            due.contains(&service.label)
        })
    }

    /// Whether a pushed load `reading` for `address` of `pool` would be
    /// taken: the pool's load source must be `push` and the endpoint one
    /// of its own.
    pub fn check_pushed_load(
        &self,
        pool: &str,
        address: IpAddr,
        reading: Result<Reading, ReadingError>,
    ) -> Result<(), ReportError> {
        self.state
            .lock()?
            .pushed(pool, address, reading)
            .map(|_| ())
    }

    /// Takes in a pushed load `reading` for `address` of `pool`, reported
    /// `age` ago (zero when pushed here), and applies what it moves.
    pub fn push_load(
        &self,
        pool: &str,
        address: IpAddr,
        reading: Result<Reading, ReadingError>,
        age: Duration,
    ) -> Result<(), ReportError> {
        {
            let mut state = self.state.lock()?;
            let (reading, spec) = state.pushed(pool, address, reading)?;
            let now = Instant::now();
            let reported = now.checked_sub(age).unwrap_or(now);
            state.load.report(pool, address, reading, &spec, reported);
        }
        if let Err(error) = self.follow_load() {
            tracing::error!("applying the load of {address} in pool {pool}: {error:#}");
        }
        Ok(())
    }

    /// Applies the shares that time moved (slow starts, figures that
    /// expired), if any did.
    fn follow_load(&self) -> anyhow::Result<()> {
        let mut state = self.state.lock()?;
        let moved = state.settle_load(Instant::now());
        if moved.is_empty() {
            return Ok(());
        }
        self.apply_settled(state, Some(&HashSet::new()), moved)
    }

    /// Tries again to write the services that could not be written.
    fn retry_unwritten(&self) {
        let retried = self
            .state
            .lock()
            .map_err(anyhow::Error::from)
            .and_then(|mut state| {
                if state.unwritten.is_empty() {
                    return Ok(());
                }
                let steered = self.view(&state);
                let pending = state.unwritten.clone();
                self.write_kernel(&mut state, &steered, &|service| {
                    pending.contains(&service.label)
                })
            });
        if let Err(error) = retried {
            tracing::error!("writing services into the kernel again: {error:#}");
        }
    }

    /// What writing the services of `config` (the current one with
    /// `None`) needs of the kernel: their names, and the most client
    /// networks held at once while they are written, which is every
    /// service's current or next generation, whichever is larger, plus the
    /// largest next generation (written before its old one goes).
    pub fn kernel_demand(
        &self,
        config: Option<&Config>,
    ) -> anyhow::Result<(Vec<(HotName, HotType)>, u64)> {
        let state = self.state.lock()?;
        let config = config.unwrap_or(&state.config);
        let mut names = Vec::new();
        let (mut networks, mut largest) = (0, 0);
        for service in &config.services {
            let (Some(hot_type), Some(name)) = (
                HotType::of(service.record_type),
                HotName::from_wire(service.name.as_bytes()),
            ) else {
                continue;
            };
            names.push((name, hot_type));
            let next = if service.policy.depends_on_client() {
                service.client_networks().len()
            } else {
                0
            };
            networks += next.max(state.kernel.networks(&service.label));
            largest = largest.max(next);
        }
        Ok((names, (networks + largest) as u64))
    }

    /// Client networks the kernel holds for the services now, and the most
    /// one service's next generation adds while it is written.
    pub fn kernel_networks(&self) -> anyhow::Result<(u64, u64)> {
        let state = self.state.lock()?;
        let largest = state
            .config
            .services
            .iter()
            .filter(|service| service.policy.depends_on_client())
            .map(|service| service.client_networks().len())
            .max()
            .unwrap_or(0);
        Ok((state.kernel.total_networks() as u64, largest as u64))
    }
}

impl LoadSink for Steering {
    fn endpoints(&self, pool: &str) -> Vec<IpAddr> {
        let Ok(state) = self.state.lock() else {
            return Vec::new();
        };
        state
            .config
            .pools
            .iter()
            .find(|p| p.name == pool)
            .map(|p| p.endpoints.iter().map(|e| e.addr).collect())
            .unwrap_or_default()
    }

    /// Takes a round's readings; a reading that could not be had is
    /// logged once per endpoint and cause (the endpoint keeps its last
    /// good figure until that expires).
    fn take(&self, pool: &str, readings: Vec<(IpAddr, Result<Reading, String>)>) {
        {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            let State { config, load, .. } = &mut *state;
            let Some(spec) = config.weighing.get(pool).and_then(|w| w.load.as_ref()) else {
                return;
            };
            let now = Instant::now();
            let failed = readings.iter().filter(|(_, r)| r.is_err()).count() as u64;
            load.count_reads(pool, readings.len() as u64 - failed, failed);
            for (address, reading) in readings {
                match reading {
                    Ok(reading) => load.report(pool, address, reading, spec, now),
                    Err(cause) => {
                        if load.problem(pool, address, &cause) {
                            tracing::warn!(
                                "pool {pool}: no load figure from {address} ({} source): {cause}; \
                                 its last good figure counts until it expires",
                                spec.source.name()
                            );
                        }
                    }
                }
            }
        }
        if let Err(error) = self.follow_load() {
            tracing::error!("applying the load of pool {pool}: {error:#}");
        }
    }
}

impl Steering {
    /// Tells the hooks of each service whose answers moved to other
    /// branches (for clients in no listed network).
    /// Only `affected` services are drawn again: the others' answers did
    /// not change.
    fn note_failovers(
        &self,
        state: &mut State,
        steered: &Steered,
        affected: &dyn Fn(&Service) -> bool,
    ) {
        let State {
            config, serving, ..
        } = state;
        for service in config.services.iter().filter(|s| affected(s)) {
            let draw = service.draw(&steered.pools, steered, None);
            let mut branches: Vec<BranchSlot> = draw.drawn().map(|d| d.branch).collect();
            branches.sort_unstable();
            branches.dedup();
            let before = serving.insert(service.label.clone(), branches.clone());
            if let Some(before) = before
                && before != branches
            {
                let names = |slots: &[BranchSlot]| {
                    slots
                        .iter()
                        .map(|slot| report::branch_label(&config.branches, *slot))
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let (from, to) = (names(&before), names(&branches));
                tracing::info!(
                    event = "failover",
                    service = %service.label,
                    "service {}: answers move from [{from}] to [{to}]",
                    service.label
                );
                self.hooks.emit(Event::Failover {
                    service: service.label.clone(),
                    from,
                    to,
                });
            }
        }
        serving.retain(|label, _| config.services.iter().any(|s| s.label == *label));
    }
}

impl PoolSink for Steering {
    fn set_members(&self, pool: &str, members: Vec<PoolEndpoint>) {
        if let Err(error) = self.replace_members(pool, members) {
            tracing::error!("pool {pool}: applying its new members: {error:#}");
        }
    }

    fn set_cold_start(&self, pool: &str, cold: Option<Arc<ColdStart>>) {
        let applied = self.cold_starts.lock().map(|mut starts| match cold {
            Some(cold) => starts.insert(pool.to_owned(), cold),
            None => starts.remove(pool),
        });
        let index = self
            .state
            .lock()
            .map(|state| state.config.pools.iter().position(|p| p.name == pool));
        if let Err(error) = applied
            .map_err(anyhow::Error::from)
            .and(index.map_err(anyhow::Error::from))
            .and_then(|index| self.apply(Some(&index.into_iter().collect())))
        {
            tracing::error!("pool {pool}: {error:#}");
        }
    }

    fn answers(&self, pool: &str) -> u64 {
        self.pool_answers(pool).unwrap_or(0)
    }
}

/// Every service of `config` that `catalog` cannot have it answer for, on
/// its line: one whose name is in no zone (it would have no SOA to answer
/// other types with), or in a zone signed elsewhere (its answers would
/// carry no signatures, and validating resolvers would find them bogus).
pub fn unanswerable_services(config: &Config, catalog: &Catalog) -> Vec<FileError> {
    config
        .services
        .iter()
        .filter_map(|service| {
            let name = service.name.to_name();
            let problem = match catalog.find(service.name.as_bytes()) {
                None => format!("{name} is in no zone being served"),
                Some(zone) if zone.is_presigned() => format!(
                    "{name} is in {}, a zone signed elsewhere: dnslb cannot sign the service's answers",
                    zone.origin_name()
                ),
                Some(_) => return None,
            };
            Some(config.declared.service_problem(&service.label, problem))
        })
        .collect()
}

/// The names and types whose answers a service of `config` owns: zone sync
/// leaves them alone.
pub fn steered_names(config: &Config) -> HashSet<(WireName, HotType)> {
    config
        .services
        .iter()
        .filter_map(|service| Some((service.name.clone(), HotType::of(service.record_type)?)))
        .collect()
}

#[cfg(test)]
mod tests;
