//! Registered pools: instances that another orchestrator (or a deploy
//! script) registers through the control API, as AWS Cloud Map instances
//! are. An instance registered with a TTL must be renewed by a heartbeat
//! within it, or it is dropped. Registrations are kept in a state file,
//! written whole to a temporary file and renamed over the old one, so a
//! restart (or a crash part way through a write) finds the last complete
//! set.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::PoolSink;
pub use crate::api::types::Registration;
use crate::{policy::PoolEndpoint, shared::Shared};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no registered pool named `{0}` (its kind must be \"registered\")")]
    NoPool(String),
    #[error("{address} is not registered in pool `{pool}`")]
    NotRegistered { pool: String, address: IpAddr },
    #[error("saving the registrations to {}: {error}", .path.display())]
    Save {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Poisoned(#[from] crate::shared::Poisoned),
}

/// The pool member a registration makes: checked before it is answered.
fn endpoint(registration: &Registration) -> PoolEndpoint {
    PoolEndpoint {
        weight: registration.weight,
        port: registration.port,
        starts_down: true,
        ..PoolEndpoint::new(registration.address)
    }
}

/// The state file's contents: registrations by pool.
type Registrations = BTreeMap<String, BTreeMap<IpAddr, Registration>>;

struct State {
    pools: BTreeSet<String>,
    registrations: Registrations,
}

/// Every registered pool's instances; changes reach the sink at once.
pub struct Registry {
    state: Shared<State>,
    file: PathBuf,
    sink: Arc<dyn PoolSink>,
}

impl Registry {
    /// The registry saved in `file`, if there is one (expired instances
    /// are dropped on the way in). A file that cannot be read is reported
    /// and set aside: serving starts without it rather than not at all.
    pub fn open(file: PathBuf, sink: Arc<dyn PoolSink>) -> Registry {
        let registrations = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::error!(
                    "{}: not a registrations file ({error}); starting with none",
                    file.display()
                );
                Registrations::default()
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Registrations::default(),
            Err(error) => {
                tracing::error!("reading {}: {error}; starting with none", file.display());
                Registrations::default()
            }
        };
        Registry {
            state: Shared::new(
                "the registrations",
                State {
                    pools: BTreeSet::new(),
                    registrations,
                },
            ),
            file,
            sink,
        }
    }

    /// The registered pools of the current configuration: each gets its
    /// saved instances. Registrations of pools that left the configuration
    /// are kept in the file, for when they come back.
    pub fn set_pools(&self, pools: BTreeSet<String>) -> Result<(), RegistryError> {
        let mut state = self.state.lock()?;
        state.pools = pools;
        drop_expired(&mut state.registrations, unix_now());
        for pool in &state.pools {
            self.publish(&state, pool);
        }
        Ok(())
    }

    /// `registration` with its expiry set from its TTL, from now.
    pub fn stamped(&self, mut registration: Registration) -> Registration {
        registration.expires = registration.ttl_seconds.map(|ttl| unix_now() + ttl);
        registration
    }

    /// Registers (or re-registers, with new details) `registration` in
    /// `pool`.
    pub fn register(
        &self,
        pool: &str,
        registration: Registration,
    ) -> Result<Registration, RegistryError> {
        let registration = self.stamped(registration);
        self.restore(pool, registration.clone())?;
        Ok(registration)
    }

    /// Registers `registration` in `pool` as another node of the fleet
    /// registered it: its expiry as that node set it.
    pub fn restore(&self, pool: &str, registration: Registration) -> Result<(), RegistryError> {
        self.change(pool, |instances| {
            instances.insert(registration.address, registration);
            Ok(())
        })
    }

    /// The instance `address` of `pool`, as registered.
    pub fn registered(&self, pool: &str, address: IpAddr) -> Result<Registration, RegistryError> {
        self.instances(pool)?
            .into_iter()
            .find(|instance| instance.address == address)
            .ok_or_else(|| RegistryError::NotRegistered {
                pool: pool.to_owned(),
                address,
            })
    }

    /// The registration `address` in `pool` would have after a heartbeat
    /// now, without changing it.
    pub fn renewed(&self, pool: &str, address: IpAddr) -> Result<Registration, RegistryError> {
        Ok(self.stamped(self.registered(pool, address)?))
    }

    pub fn deregister(&self, pool: &str, address: IpAddr) -> Result<(), RegistryError> {
        self.change(pool, |instances| {
            instances
                .remove(&address)
                .map(drop)
                .ok_or_else(|| RegistryError::NotRegistered {
                    pool: pool.to_owned(),
                    address,
                })
        })
    }

    /// Renews the TTL of an instance.
    pub fn heartbeat(&self, pool: &str, address: IpAddr) -> Result<Registration, RegistryError> {
        self.change(pool, |instances| {
            let instance =
                instances
                    .get_mut(&address)
                    .ok_or_else(|| RegistryError::NotRegistered {
                        pool: pool.to_owned(),
                        address,
                    })?;
            instance.expires = instance.ttl_seconds.map(|ttl| unix_now() + ttl);
            Ok(instance.clone())
        })
    }

    /// The instances of `pool`.
    pub fn instances(&self, pool: &str) -> Result<Vec<Registration>, RegistryError> {
        let state = self.state.lock()?;
        if !state.pools.contains(pool) {
            return Err(RegistryError::NoPool(pool.to_owned()));
        }
        Ok(state
            .registrations
            .get(pool)
            .map(|instances| instances.values().cloned().collect())
            .unwrap_or_default())
    }

    /// Drops the instances whose TTL ran out; returns when the next one
    /// runs out (if any does).
    pub fn expire(&self) -> Result<Option<Duration>, RegistryError> {
        let mut state = self.state.lock()?;
        let now = unix_now();
        let expired = drop_expired(&mut state.registrations, now);
        for (pool, address) in &expired {
            tracing::info!(
                event = "expired",
                pool = %pool,
                endpoint = %address,
                "{address} in pool {pool}: no heartbeat within its TTL, dropped"
            );
        }
        let pools: BTreeSet<&String> = expired.iter().map(|(pool, _)| pool).collect();
        if !pools.is_empty() {
            save(&self.file, &state.registrations)?;
            for pool in pools {
                self.publish(&state, pool);
            }
        }
        let next = state
            .registrations
            .values()
            .flat_map(BTreeMap::values)
            .filter_map(|r| r.expires)
            .min();
        Ok(next.map(|at| Duration::from_secs(at.saturating_sub(now))))
    }

    /// Applies `change` to the instances of `pool`, saves, and publishes.
    fn change<T>(
        &self,
        pool: &str,
        change: impl FnOnce(&mut BTreeMap<IpAddr, Registration>) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut state = self.state.lock()?;
        if !state.pools.contains(pool) {
            return Err(RegistryError::NoPool(pool.to_owned()));
        }
        let mut registrations = state.registrations.clone();
        let out = change(registrations.entry(pool.to_owned()).or_default())?;
        // Saved before it is served: what answers is always on disk.
        save(&self.file, &registrations)?;
        state.registrations = registrations;
        self.publish(&state, pool);
        Ok(out)
    }

    fn publish(&self, state: &State, pool: &str) {
        let members = state
            .registrations
            .get(pool)
            .map(|instances| instances.values().map(endpoint).collect())
            .unwrap_or_default();
        self.sink.set_members(pool, members);
    }
}

/// Drops expired instances, returning which.
fn drop_expired(registrations: &mut Registrations, now: u64) -> Vec<(String, IpAddr)> {
    let mut expired = Vec::new();
    for (pool, instances) in registrations.iter_mut() {
        instances.retain(|address, r| {
            let live = r.expires.is_none_or(|at| at > now);
            if !live {
                expired.push((pool.clone(), *address));
            }
            live
        });
    }
    expired
}

/// Writes `registrations` so that a reader sees the old file or the new.
fn save(file: &Path, registrations: &Registrations) -> Result<(), RegistryError> {
    let failed = |error| RegistryError::Save {
        path: file.to_owned(),
        error,
    };
    let bytes = serde_json::to_vec_pretty(registrations)
        .map_err(|error| failed(std::io::Error::other(error)))?;
    crate::durable::replace_file(file, &bytes).map_err(failed)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Drops expired instances as their TTLs run out, for as long as the
/// registry lives.
pub async fn expire_registrations(registry: std::sync::Weak<Registry>) {
    const IDLE_CHECK: Duration = Duration::from_secs(1);
    loop {
        let Some(registry) = registry.upgrade() else {
            return;
        };
        // Quick: a scan and, when something expired, one small file write.
        let next = match registry.expire() {
            Ok(next) => next.unwrap_or(IDLE_CHECK).min(IDLE_CHECK),
            Err(error) => {
                tracing::error!("expiring registrations: {error}");
                IDLE_CHECK
            }
        };
        drop(registry);
        // At least a moment, so that an instance that expires this second
        // is not checked in a tight loop.
        tokio::time::sleep(next.max(Duration::from_millis(100))).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::backends::ColdStart;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, Vec<IpAddr>)>>);

    impl PoolSink for Recorder {
        fn set_members(&self, pool: &str, members: Vec<PoolEndpoint>) {
            let addrs = members.iter().map(|m| m.addr).collect();
            self.0.lock().unwrap().push((pool.to_owned(), addrs));
        }
        fn set_cold_start(&self, _: &str, _: Option<Arc<ColdStart>>) {}
        fn answers(&self, _: &str) -> u64 {
            0
        }
    }

    fn registration(address: &str, ttl: Option<u64>) -> Registration {
        Registration {
            address: address.parse().unwrap(),
            weight: 2,
            port: None,
            ttl_seconds: ttl,
            expires: None,
        }
    }

    #[test]
    fn registrations_are_published_saved_and_read_back() {
        let dir = std::env::temp_dir().join(format!("dnslb-registry-{}", std::process::id()));
        let file = dir.join("registrations.json");
        let _ = std::fs::remove_file(&file);
        let sink = Arc::new(Recorder::default());
        let registry = Registry::open(file.clone(), sink.clone());
        registry.set_pools(["api".to_owned()].into()).unwrap();
        assert!(matches!(
            registry.register("web", registration("198.18.0.1", None)),
            Err(RegistryError::NoPool(_))
        ));
        registry
            .register("api", registration("198.18.0.1", None))
            .unwrap();
        registry
            .register("api", registration("198.18.0.2", Some(30)))
            .unwrap();
        let last = sink.0.lock().unwrap().last().cloned().unwrap();
        assert_eq!(last.0, "api");
        assert_eq!(last.1.len(), 2);

        let again = Registry::open(file.clone(), Arc::new(Recorder::default()));
        again.set_pools(["api".to_owned()].into()).unwrap();
        let instances = again.instances("api").unwrap();
        assert_eq!(instances.len(), 2);
        assert!(instances[1].expires.is_some());

        registry
            .deregister("api", "198.18.0.1".parse().unwrap())
            .unwrap();
        assert!(matches!(
            registry.heartbeat("api", "198.18.0.1".parse().unwrap()),
            Err(RegistryError::NotRegistered { .. })
        ));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn expired_instances_are_dropped() {
        let mut registrations = Registrations::new();
        let mut stale = registration("198.18.0.1", Some(1));
        stale.expires = Some(100);
        let mut fresh = registration("198.18.0.2", Some(1));
        fresh.expires = Some(200);
        registrations.entry("api".into()).or_default().extend([
            (stale.address, stale),
            (fresh.address, fresh),
            (
                "198.18.0.3".parse().unwrap(),
                registration("198.18.0.3", None),
            ),
        ]);
        let expired = drop_expired(&mut registrations, 150);
        assert_eq!(expired, vec![("api".into(), "198.18.0.1".parse().unwrap())]);
        assert_eq!(registrations["api"].len(), 2);
    }
}
