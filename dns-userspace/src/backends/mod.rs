//! Pools whose endpoints come and go at run time, and where they come
//! from: a Docker Engine (`docker`), instances registered through the
//! control API (`registered`), or instances dnslb starts itself when the
//! queries for them arrive (`function`).
//!
//! Each source reports its pool's members to a [`PoolSink`] (the
//! steering), which checks them and writes the answers; the sources know
//! nothing of policies or the kernel.

mod docker;
mod function;
mod launch;
mod metrics;
mod registered;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::PathBuf,
    sync::Arc,
};

use prometheus::Registry as MetricsRegistry;

pub use self::{
    docker::{DockerSpec, POOL_LABEL},
    function::{ColdStart, ColdStartMode, FunctionSpec},
    launch::{FUNCTION_LABEL, Launch},
    metrics::BackendMetrics,
    registered::{Registration, Registry, RegistryError, expire_registrations},
};
use crate::{hooks::Hooks, policy::PoolEndpoint, shared::Shared};

/// Where a pool's endpoints come from, when not from the policy file.
#[derive(Clone, Debug, PartialEq)]
pub enum PoolSource {
    Docker(DockerSpec),
    Registered,
    Function(Box<FunctionSpec>),
}

impl PoolSource {
    pub fn kind(&self) -> &'static str {
        match self {
            PoolSource::Docker(_) => "docker",
            PoolSource::Registered => "registered",
            PoolSource::Function(_) => "function",
        }
    }
}

/// Where sources report what they know: the steering.
pub trait PoolSink: Send + Sync {
    /// The pool's members now, replacing the previous list.
    fn set_members(&self, pool: &str, members: Vec<PoolEndpoint>);
    /// The cold-start handle of a function pool (`None`: no longer one).
    fn set_cold_start(&self, pool: &str, cold: Option<Arc<ColdStart>>);
    /// Answers given from the pool so far, the kernel's and the daemon's.
    fn answers(&self, pool: &str) -> u64;
}

/// A source running for one pool.
struct Running {
    source: PoolSource,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Every pool source of the configuration, started, replaced and stopped
/// as the configuration changes.
pub struct Backends {
    sink: Arc<dyn PoolSink>,
    registry: Arc<Registry>,
    metrics: Arc<BackendMetrics>,
    hooks: Arc<Hooks>,
    running: Shared<HashMap<String, Running>>,
}

impl Backends {
    /// Registrations are kept in `state_dir`. Call from within the runtime.
    pub fn new(
        sink: Arc<dyn PoolSink>,
        state_dir: PathBuf,
        metrics: &MetricsRegistry,
        hooks: Arc<Hooks>,
    ) -> Arc<Backends> {
        let registry = Arc::new(Registry::open(
            state_dir.join("registrations.json"),
            sink.clone(),
        ));
        tokio::spawn(expire_registrations(Arc::downgrade(&registry)));
        Arc::new(Backends {
            sink,
            registry,
            metrics: Arc::new(BackendMetrics::new(metrics)),
            hooks,
            running: Shared::new("the pool sources", HashMap::new()),
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Runs the sources of `sources` (by pool name): a source whose
    /// definition is unchanged goes on as it is; a changed one restarts;
    /// one whose pool is gone stops (a function pool's instances with it).
    pub fn apply(&self, sources: &BTreeMap<String, PoolSource>) -> anyhow::Result<()> {
        let mut running = self.running.lock()?;
        running.retain(|pool, run| {
            let keep = sources.get(pool) == Some(&run.source);
            if !keep && matches!(run.source, PoolSource::Function(_)) {
                self.sink.set_cold_start(pool, None);
            }
            keep
        });
        for (pool, source) in sources {
            if running.contains_key(pool) {
                continue;
            }
            let (pool_name, sink, metrics, hooks) = (
                pool.clone(),
                self.sink.clone(),
                self.metrics.clone(),
                self.hooks.clone(),
            );
            let task = match source {
                PoolSource::Docker(spec) => Some(tokio::spawn(docker::follow(
                    pool_name,
                    spec.clone(),
                    sink,
                    metrics,
                    hooks,
                ))),
                PoolSource::Function(spec) => Some(tokio::spawn(function::run(
                    pool_name,
                    spec.as_ref().clone(),
                    sink,
                    metrics,
                    hooks,
                ))),
                PoolSource::Registered => None,
            };
            running.insert(
                pool.clone(),
                Running {
                    source: source.clone(),
                    task,
                },
            );
        }
        let registered: BTreeSet<String> = sources
            .iter()
            .filter(|(_, source)| **source == PoolSource::Registered)
            .map(|(pool, _)| pool.clone())
            .collect();
        drop(running);
        self.registry.set_pools(registered)?;
        Ok(())
    }
}
