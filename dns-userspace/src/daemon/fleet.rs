//! The daemon as one node of a fleet (`--cluster`): it follows the fleet's
//! store (etcd) and applies every change there to itself under the same
//! no-gap rule as a local change, and sends the control API's changes to
//! the store rather than applying them itself, so that every node applies
//! them alike. It publishes its own health verdicts under a lease, and
//! reads the other nodes' for the fleet's verdict.
//!
//! Without etcd it serves its last state (the policy file is written on
//! every change from the fleet), says so (`dnslb status`,
//! `dnslb_fleet_connected`), refuses changes, and keeps trying to reach
//! etcd; once back, it reads the whole store again.

use std::{
    collections::HashMap,
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Weak},
    time::Duration,
};

use arc_swap::ArcSwapOption;
use prometheus::IntGauge;
use tokio::sync::watch;

use super::live::{ChangeError, Live};
use crate::{
    api::types::{FleetStatus, LoadValue, Registration},
    cluster::{
        Change, ClusterArgs, Credentials, FleetKey, FleetVotes, PushedLoad, Store, StoreError,
        ZoneAssignment,
        keys::{parse_verdict, verdict_value},
        store::REQUEST_TIMEOUT,
    },
    metrics::Metrics,
    policy::Pool,
    steering::{OverrideError, Overrides},
};

/// How long this node's verdicts outlive it: a dead node stops counting
/// in the fleet's verdicts this long after its last renewal.
const LEASE_TTL: Duration = Duration::from_secs(3);
/// How soon to try etcd again after losing it.
const RECONNECT: Duration = Duration::from_secs(1);
/// How often this node's verdicts are compared with those published,
/// besides on every change of what it answers.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(
        "the fleet's store ({0}) cannot be reached: nothing changed, and this node serves its last state"
    )]
    Unreachable(String),
    #[error("the fleet's store refused the change: {0}")]
    Store(#[from] StoreError),
    #[error("{0} in the fleet's store does not read: {1}")]
    Value(String, String),
}

/// This node's membership of the fleet.
pub struct Fleet {
    args: ClusterArgs,
    /// The store while it is reached.
    store: ArcSwapOption<Store>,
    /// The store's revision this node has applied.
    applied: watch::Sender<i64>,
    runtime: tokio::runtime::Handle,
    connected_gauge: IntGauge,
    revision_gauge: IntGauge,
    /// The lease this node's verdicts are under, while it has one.
    lease: std::sync::atomic::AtomicI64,
}

impl Fleet {
    /// Call from within the runtime.
    pub fn new(args: ClusterArgs, metrics: &Metrics) -> Arc<Fleet> {
        Arc::new(Fleet {
            connected_gauge: metrics.gauge(
                "dnslb_fleet_connected",
                "1 while the fleet's store (etcd) is reached, 0 while this node serves its last state",
            ),
            revision_gauge: metrics.gauge(
                "dnslb_fleet_revision",
                "The fleet store's revision this node has applied",
            ),
            args,
            store: ArcSwapOption::empty(),
            applied: watch::Sender::new(0),
            runtime: tokio::runtime::Handle::current(),
            lease: std::sync::atomic::AtomicI64::new(0),
        })
    }

    pub fn status(&self) -> FleetStatus {
        FleetStatus {
            store: self.args.to_string(),
            node: self.args.node.clone(),
            connected: self.store.load().is_some(),
            revision: *self.applied.borrow(),
        }
    }

    /// Runs `write` against the store, from a blocking thread (the control
    /// API's), and waits until this node has applied what it wrote, so
    /// that the caller sees the change here when the call returns.
    fn write<F>(&self, write: impl FnOnce(Store) -> F) -> Result<(), ChangeError>
    where
        F: Future<Output = Result<i64, StoreError>>,
    {
        let store = self
            .store
            .load_full()
            .ok_or_else(|| FleetError::Unreachable(self.args.to_string()))?;
        let revision = self
            .runtime
            .block_on(write(Store::clone(&store)))
            .map_err(FleetError::Store)?;
        let mut applied = self.applied.subscribe();
        let caught_up = self.runtime.block_on(tokio::time::timeout(
            REQUEST_TIMEOUT,
            applied.wait_for(|done| *done >= revision),
        ));
        if caught_up.is_err() {
            tracing::warn!(
                "the fleet took the change (revision {revision}), not yet applied on this node"
            );
        }
        Ok(())
    }

    /// Changes the fleet's drains and weights with `change`, checked
    /// first against this node's `pools` and `current` overrides.
    pub fn change_overrides(
        &self,
        pools: &[Pool],
        current: &Overrides,
        change: impl Fn(&mut Overrides, &[Pool]) -> Result<(), OverrideError>,
    ) -> Result<(), ChangeError> {
        change(&mut current.clone(), pools)?;
        self.write(|store| async move {
            store
                .update(&FleetKey::Overrides, |value| {
                    let mut overrides: Overrides = match value {
                        Some(bytes) => serde_json::from_slice(bytes).map_err(|error| {
                            format!("the fleet's drains and weights do not read ({error}): fix or delete the key")
                        })?,
                        None => current.clone(),
                    };
                    change(&mut overrides, pools).map_err(|error| error.to_string())?;
                    serde_json::to_vec(&overrides).map_err(|error| error.to_string())
                })
                .await
        })
    }

    /// Reports `load` for `address` of `pool` to every node of the fleet.
    pub fn put_load(
        &self,
        pool: &str,
        address: IpAddr,
        load: LoadValue,
    ) -> Result<(), ChangeError> {
        let key = FleetKey::Load {
            pool: pool.to_owned(),
            address,
        };
        let pushed = PushedLoad {
            load,
            reported: unix_now(),
        };
        let value = serde_json::to_vec(&pushed)
            .map_err(|error| FleetError::Value(key.path(""), error.to_string()))?;
        self.write(|store| async move { store.put(&key, value, None).await })
    }

    /// Registers (or renews) `registration` in `pool` for the fleet.
    pub fn put_instance(&self, pool: &str, registration: &Registration) -> Result<(), ChangeError> {
        let key = FleetKey::Instance {
            pool: pool.to_owned(),
            address: registration.address,
        };
        let value = serde_json::to_vec(registration)
            .map_err(|error| FleetError::Value(key.path(""), error.to_string()))?;
        self.write(|store| async move { store.put(&key, value, None).await })
    }

    pub fn delete_instance(&self, pool: &str, address: IpAddr) -> Result<(), ChangeError> {
        let key = FleetKey::Instance {
            pool: pool.to_owned(),
            address,
        };
        self.write(|store| async move { store.delete(&key).await })
    }

    /// Serves `origin` from `file` on every node (`None`: no longer).
    pub fn assign_zone(&self, origin: &str, file: Option<PathBuf>) -> Result<(), ChangeError> {
        let key = FleetKey::Zone(origin.to_owned());
        let value = serde_json::to_vec(&ZoneAssignment { file })
            .map_err(|error| FleetError::Value(key.path(""), error.to_string()))?;
        self.write(|store| async move { store.put(&key, value, None).await })
    }

    /// Makes `text` the fleet's policy file.
    pub fn put_policy(&self, text: &str) -> Result<(), ChangeError> {
        let value = text.as_bytes().to_vec();
        self.write(|store| async move { store.put(&FleetKey::Policy, value, None).await })
    }

    /// Leaves the fleet as the daemon stops: this node's verdicts go at
    /// once (its lease revoked), not when the lease would have run out.
    pub async fn leave(&self) {
        let lease = self.lease.swap(0, std::sync::atomic::Ordering::Relaxed);
        let Some(store) = self.store.load_full() else {
            return;
        };
        if lease != 0
            && let Err(error) = store.revoke(lease).await
        {
            tracing::warn!("leaving the fleet: revoking this node's lease: {error}");
        }
        self.connected(None);
    }

    fn connected(&self, store: Option<Store>) {
        self.connected_gauge.set(i64::from(store.is_some()));
        self.store.store(store.map(Arc::new));
    }

    fn applied(&self, revision: i64) {
        self.revision_gauge.set(revision);
        self.applied.send_replace(revision);
    }
}

/// The TLS files and etcd password the flags name, read now.
pub fn credentials(args: &crate::cli::FleetArgs) -> anyhow::Result<Credentials> {
    use anyhow::Context;
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    };
    let ca = args.cluster_ca.as_deref().map(read).transpose()?;
    let identity = match (&args.cluster_cert, &args.cluster_key) {
        (Some(certificate), Some(key)) => Some((read(certificate)?, read(key)?)),
        _ => None,
    };
    let user = match (&args.cluster_user, &args.cluster_password_file) {
        (Some(name), Some(file)) => {
            let text = String::from_utf8(read(file)?)
                .with_context(|| format!("{}: not UTF-8", file.display()))?;
            let password = text.lines().next().unwrap_or_default().to_owned();
            Some((name.clone(), password))
        }
        _ => None,
    };
    Ok(Credentials { ca, identity, user })
}

/// Follows the fleet's store for `live` until the daemon stops.
pub async fn follow(live: Weak<Live>, fleet: Arc<Fleet>) {
    // Each new reason for not reaching etcd is logged once; the same one
    // again, every second, only at debug level.
    let mut last_failure = String::new();
    loop {
        let outcome = match Store::connect(&fleet.args).await {
            Ok(store) => session(&live, &fleet, store).await,
            Err(error) => Err(error),
        };
        let Err(error) = outcome else {
            return;
        };
        if fleet.store.load().is_some() {
            tracing::error!(
                event = "fleet",
                result = "disconnected",
                "lost the fleet's store {}: {error}; serving the last state, changes refused until it is back",
                fleet.args
            );
        } else if error.to_string() != last_failure {
            tracing::warn!(
                event = "fleet",
                result = "unreachable",
                "cannot reach the fleet's store {}: {error}; serving the last state, trying again every {} s",
                fleet.args,
                RECONNECT.as_secs()
            );
        } else {
            tracing::debug!("reaching the fleet's store {}: {error}", fleet.args);
        }
        last_failure = error.to_string();
        fleet.connected(None);
        tokio::time::sleep(RECONNECT).await;
    }
}

/// One connection's worth of following: the whole store, then its changes
/// as they come. `Ok` once the daemon is gone.
async fn session(live: &Weak<Live>, fleet: &Fleet, store: Store) -> Result<(), StoreError> {
    let Some(policy) = live.upgrade().and_then(|live| live.args().config.clone()) else {
        return Ok(());
    };
    // The first node of a fleet gives it its policy file.
    if let Ok(text) = std::fs::read_to_string(&policy)
        && store.put_if_absent(&FleetKey::Policy, text).await?
    {
        tracing::info!("the fleet had no policy file: gave it {}", policy.display());
    }
    let (revision, changes) = store.snapshot().await?;
    if !apply(live, &fleet.args.node, changes, true).await {
        return Ok(());
    }
    let mut lease = store.lease(LEASE_TTL).await?;
    fleet
        .lease
        .store(lease.id, std::sync::atomic::Ordering::Relaxed);
    let mut watch = store.watch(revision + 1).await?;
    fleet.applied(revision);
    fleet.connected(Some(store.clone()));
    tracing::info!(
        event = "fleet",
        result = "connected",
        "following the fleet's store {} as node {} from revision {revision}",
        fleet.args,
        fleet.args.node
    );
    let mut published = HashMap::new();
    let Some(mut answered) = live.upgrade().map(|live| live.steering.changes()) else {
        return Ok(());
    };
    let mut every = tokio::time::interval(PUBLISH_EVERY);
    loop {
        tokio::select! {
            batch = watch.next() => {
                let (revision, changes) = batch?;
                if !apply(live, &fleet.args.node, changes, false).await {
                    return Ok(());
                }
                fleet.applied(revision);
            }
            () = lease.lost() => {
                return Err(StoreError::Refused("this node's lease could not be renewed".into()));
            }
            _ = answered.changed() => {}
            _ = every.tick() => {}
        }
        let Some(alive) = live.upgrade() else {
            return Ok(());
        };
        let verdicts = alive.steering.local_verdicts().unwrap_or_default();
        drop(alive);
        publish(&store, &fleet.args.node, lease.id, &mut published, verdicts).await?;
    }
}

/// Writes this node's verdicts that changed since `published`.
async fn publish(
    store: &Store,
    node: &str,
    lease: i64,
    published: &mut HashMap<(String, IpAddr), bool>,
    verdicts: Vec<(String, IpAddr, bool)>,
) -> Result<(), StoreError> {
    let now: HashMap<(String, IpAddr), bool> = verdicts
        .into_iter()
        .map(|(pool, address, up)| ((pool, address), up))
        .collect();
    let key = |(pool, address): &(String, IpAddr)| FleetKey::Health {
        node: node.to_owned(),
        pool: pool.clone(),
        address: *address,
    };
    for (endpoint, up) in &now {
        if published.get(endpoint) != Some(up) {
            store
                .put(&key(endpoint), verdict_value(*up), Some(lease))
                .await?;
        }
    }
    for endpoint in published.keys() {
        if !now.contains_key(endpoint) {
            store.delete(&key(endpoint)).await?;
        }
    }
    *published = now;
    Ok(())
}

/// Applies `changes` from the store to `live` (`whole`: they are the whole
/// store, so the other nodes' verdicts are replaced, not added to). False
/// once the daemon is gone.
async fn apply(live: &Weak<Live>, node: &str, changes: Vec<Change>, whole: bool) -> bool {
    let Some(live) = live.upgrade() else {
        return false;
    };
    let node = node.to_owned();
    let applied =
        tokio::task::spawn_blocking(move || apply_now(&live, &node, changes, whole)).await;
    if let Err(error) = applied {
        tracing::error!("applying the fleet's changes: {error}");
    }
    true
}

/// Now, in Unix seconds: when a pushed load was reported.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// `bytes` as JSON, or `None` with an error naming `what` logged: a value
/// another writer broke is not applied, and the rest still is.
fn read_json<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(bytes)
        .map_err(|error| tracing::error!("{what} does not read, not applied: {error}"))
        .ok()
}

fn apply_now(live: &Live, node: &str, changes: Vec<Change>, whole: bool) {
    let mut votes: Vec<(String, String, IpAddr, Option<bool>)> = Vec::new();
    for Change { key, value } in changes {
        match (key, value) {
            (
                FleetKey::Health {
                    node: their,
                    pool,
                    address,
                },
                value,
            ) => {
                if their != node {
                    votes.push((
                        their,
                        pool,
                        address,
                        value.as_deref().and_then(parse_verdict),
                    ));
                }
            }
            (FleetKey::Policy, Some(text)) => match String::from_utf8(text) {
                Ok(text) => live.apply_fleet_policy(&text),
                Err(_) => tracing::error!("the fleet's policy file is not UTF-8: not applied"),
            },
            (FleetKey::Overrides, value) => {
                let overrides = match value {
                    Some(bytes) => read_json::<Overrides>("the fleet's drains and weights", &bytes),
                    None => Some(Overrides::default()),
                };
                if let Some(overrides) = overrides {
                    let what = "drains and weights from the fleet";
                    let _ = live.change_overrides(what, |mine, _| {
                        *mine = overrides;
                        Ok(())
                    });
                }
            }
            (FleetKey::Zone(origin), Some(value)) => {
                let what = format!("the fleet's zone {origin}");
                if let Some(assignment) = read_json::<ZoneAssignment>(&what, &value) {
                    live.assign_zone(&origin, assignment.file);
                }
            }
            (FleetKey::Instance { pool, address }, Some(value)) => {
                let what = format!("the fleet's instance {address} of pool {pool}");
                if let Some(registration) = read_json::<Registration>(&what, &value) {
                    live.restore_instance(&pool, registration);
                }
            }
            (FleetKey::Instance { pool, address }, None) => live.forget_instance(&pool, address),
            (FleetKey::Load { pool, address }, Some(value)) => {
                let what = format!("the fleet's load of {address} in pool {pool}");
                if let Some(pushed) = read_json::<PushedLoad>(&what, &value) {
                    let age = Duration::try_from_secs_f64(unix_now() - pushed.reported)
                        .unwrap_or(Duration::ZERO);
                    let reading = pushed.load.reading();
                    if let Err(error) = live.steering.push_load(&pool, address, reading, age) {
                        tracing::warn!("{what} not taken: {error}");
                    }
                }
            }
            // A load nobody reports any more expires by itself.
            (FleetKey::Load { .. }, None) => {}
            (FleetKey::Policy | FleetKey::Zone(_), None) => {}
        }
    }
    if votes.is_empty() && !whole {
        return;
    }
    let changed = live.steering.change_fleet_votes(|fleet| {
        if whole {
            *fleet = FleetVotes::default();
        }
        for (their, pool, address, up) in &votes {
            fleet.set(their, pool, *address, *up);
        }
    });
    if let Err(error) = changed {
        tracing::error!("applying the fleet's health verdicts: {error:#}");
    }
}
