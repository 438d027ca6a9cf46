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
    sync::Arc,
};

use hickory_proto::rr::Name;
use tokio::sync::mpsc;

pub use self::{
    metrics::SteeringCollector,
    overrides::{EndpointRef, OverrideError, Overrides},
    view::{BranchCounters, Steered, SteeredAnswer, SteeredSink},
};
use crate::{
    config::{BranchLabels, Config},
    dataplane::{HotType, KernelServices, SharedDataplane},
    health::{HealthEvent, HealthRunner},
    policy::{Health, Pool, Service},
    shared::Shared,
    zone::{Catalog, WireName},
};

struct State {
    config: Config,
    runner: Option<HealthRunner>,
    kernel: KernelServices,
    overrides: Overrides,
}

/// The running steering: configuration, checks, overrides, and the task
/// applying verdicts.
pub struct Steering {
    state: Shared<State>,
    sink: Arc<dyn SteeredSink>,
    dataplane: Option<SharedDataplane>,
    counters: Arc<BranchCounters>,
    events: mpsc::UnboundedSender<HealthEvent>,
}

impl Steering {
    /// Starts the checks of `config`, publishes its services and spawns the
    /// task that follows health changes. Call from within the runtime.
    pub fn start(
        config: Config,
        sink: Arc<dyn SteeredSink>,
        dataplane: Option<SharedDataplane>,
    ) -> anyhow::Result<Arc<Steering>> {
        let (events, mut received) = mpsc::unbounded_channel();
        let runner = HealthRunner::start(&config.checks, &config.pools, None, events.clone())?;
        let steering = Arc::new(Steering {
            state: Shared::new(
                "the steering state",
                State {
                    config,
                    runner: Some(runner),
                    kernel: KernelServices::default(),
                    overrides: Overrides::default(),
                },
            ),
            sink,
            dataplane,
            counters: Arc::new(BranchCounters::default()),
            events,
        });
        steering.apply(None)?;
        let task = Arc::downgrade(&steering);
        tokio::spawn(async move {
            while let Some(first) = received.recv().await {
                let mut pools = HashSet::from([first.pool]);
                while let Ok(more) = received.try_recv() {
                    pools.insert(more.pool);
                }
                let Some(steering) = task.upgrade() else {
                    return;
                };
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
    pub fn reload(&self, config: Config) -> anyhow::Result<()> {
        let mut state = self.state.lock()?;
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
        self.apply(None)
    }

    /// Changes the operator's overrides with `change`; if it fails (an
    /// unknown endpoint or pool) nothing changes. Applied at once to both
    /// places that answer.
    pub fn change_overrides(
        &self,
        change: impl FnOnce(&mut Overrides, &[Pool]) -> Result<(), OverrideError>,
    ) -> anyhow::Result<()> {
        {
            let mut state = self.state.lock()?;
            let State {
                config, overrides, ..
            } = &mut *state;
            let mut changed = overrides.clone();
            change(&mut changed, &config.pools)?;
            *overrides = changed;
        }
        self.apply(None)
    }

    /// Checks that every service answers inside a zone of `catalog`.
    pub fn check_zones(&self, catalog: &Catalog) -> anyhow::Result<Result<(), OutsideZones>> {
        Ok(check_services_in_zones(&self.state.lock()?.config, catalog))
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
            runner,
            overrides,
            ..
        } = state;
        let pools = overrides.weigh(&config.pools);
        let health = pools
            .iter()
            .enumerate()
            .map(|(p, pool)| {
                (0..pool.endpoints.len())
                    .map(|e| {
                        runner.as_ref().is_none_or(|r| r.is_up(p, e))
                            && !overrides.is_drained(pool, e)
                    })
                    .collect()
            })
            .collect();
        let mut services: HashMap<WireName, Vec<Service>> = HashMap::new();
        for service in &config.services {
            services
                .entry(service.name.clone())
                .or_default()
                .push(service.clone());
        }
        Steered {
            pools,
            health,
            services,
            counters: self.counters.clone(),
        }
    }

    /// Re-evaluates the services that use `pools` (all with `None`).
    fn apply(&self, pools: Option<&HashSet<usize>>) -> anyhow::Result<()> {
        let mut state = self.state.lock()?;
        let steered = self.view(&state);
        let State { config, kernel, .. } = &mut *state;
        if let Some(dataplane) = &self.dataplane {
            let mut dataplane = dataplane.lock()?;
            for service in &config.services {
                if let Some(pools) = pools {
                    let mut used = HashSet::new();
                    service.policy.pools(&mut used);
                    if used.is_disjoint(pools) {
                        continue;
                    }
                }
                kernel.write(&mut dataplane, service, &steered.pools, &steered)?;
            }
        }
        self.sink.set_steered(steered);
        Ok(())
    }
}

/// A service whose name is in no zone being served: it would have no SOA
/// to answer other types with.
#[derive(Debug, thiserror::Error)]
#[error("service `{label}`: {name} is in no zone being served")]
pub struct OutsideZones {
    pub label: String,
    pub name: Name,
}

/// Checks that every service of `config` answers inside a zone of `catalog`.
pub fn check_services_in_zones(config: &Config, catalog: &Catalog) -> Result<(), OutsideZones> {
    match config
        .services
        .iter()
        .find(|service| catalog.find(service.name.as_bytes()).is_none())
    {
        Some(service) => Err(OutsideZones {
            label: service.label.clone(),
            name: service.name.to_name(),
        }),
        None => Ok(()),
    }
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
