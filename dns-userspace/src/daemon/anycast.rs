//! When this node announces its anycast addresses (`[anycast]`): it owns
//! them on the dummy interface while it serves, the operator has not
//! withdrawn it, and its own checks see a healthy endpoint in every
//! upstream pool; re-decided on every change of what it answers and every
//! second. Stopping, it puts the addresses on `lo` (so that it keeps
//! answering them), takes them off the dummy interface (so that the BGP
//! daemon withdraws the routes), answers for the grace period while the
//! routers move the traffic away, and only then stops.

use std::{
    net::IpAddr,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::sync::Mutex;

use crate::{
    anycast::{
        AnycastSpec, Decision,
        netlink::{Netlink, NetlinkError},
    },
    api::types::AnycastStatus,
    steering::Steering,
};

/// How often the decision is made again besides on changes.
const EVERY: Duration = Duration::from_secs(1);

/// What this node announces, and why.
#[derive(Clone, Debug, Default)]
struct Announced {
    /// The interface and addresses on it now.
    interface: Option<(String, u32)>,
    addresses: Vec<IpAddr>,
    reason: String,
}

pub struct Anycast {
    netlink: Netlink,
    withdrawn: AtomicBool,
    stopping: AtomicBool,
    /// One decision at a time.
    announced: Mutex<Announced>,
    /// The last decision, for status (read from blocking threads).
    shown: std::sync::Mutex<AnycastStatus>,
}

impl Anycast {
    /// `withdrawn`: the operator's withdrawal, kept from the last run.
    /// Call from within the runtime.
    pub fn open(withdrawn: bool) -> Result<Arc<Anycast>, NetlinkError> {
        Ok(Arc::new(Anycast {
            netlink: Netlink::open()?,
            withdrawn: AtomicBool::new(withdrawn),
            stopping: AtomicBool::new(false),
            announced: Mutex::new(Announced::default()),
            shown: std::sync::Mutex::new(AnycastStatus::default()),
        }))
    }

    /// The operator's withdrawal (`false`) or its undoing (`true`); takes
    /// effect before this returns.
    pub async fn set_announce(&self, steering: &Steering, announce: bool) -> AnycastStatus {
        self.withdrawn.store(!announce, Ordering::Relaxed);
        self.decide(steering).await;
        self.status()
    }

    /// What the last decision announced, and why.
    pub fn status(&self) -> AnycastStatus {
        self.shown
            .lock()
            .map(|shown| shown.clone())
            .unwrap_or_default()
    }

    /// Makes the decision again now and applies it.
    async fn decide(&self, steering: &Steering) {
        let spec = match steering.anycast() {
            Ok(spec) => spec,
            Err(error) => {
                tracing::error!("anycast: {error:#}");
                return;
            }
        };
        let mut announced = self.announced.lock().await;
        let outcome = match spec {
            Some(spec) => self.apply(&mut announced, steering, &spec).await,
            None => self.leave_interface(&mut announced).await,
        };
        if let Err(error) = outcome {
            tracing::error!(event = "anycast", "anycast: {error}");
        }
        if let Ok(mut shown) = self.shown.lock() {
            *shown = AnycastStatus {
                interface: announced.interface.as_ref().map(|(name, _)| name.clone()),
                announced: announced.addresses.iter().map(IpAddr::to_string).collect(),
                reason: announced.reason.clone(),
            };
        }
    }

    async fn apply(
        &self,
        announced: &mut Announced,
        steering: &Steering,
        spec: &AnycastSpec,
    ) -> Result<(), NetlinkError> {
        let unhealthy = steering.unhealthy_pool(&spec.pools).unwrap_or(None);
        let decision = Decision::make(
            self.stopping.load(Ordering::Relaxed),
            self.withdrawn.load(Ordering::Relaxed),
            unhealthy,
        );
        if announced
            .interface
            .as_ref()
            .is_some_and(|(name, _)| *name != spec.interface)
        {
            self.leave_interface(announced).await?;
        }
        let index = match &announced.interface {
            Some((_, index)) => *index,
            None => {
                let index = self.netlink.dummy(&spec.interface).await?;
                announced.interface = Some((spec.interface.clone(), index));
                index
            }
        };
        let wanted: &[IpAddr] = if decision.announces() {
            &spec.addresses
        } else {
            &[]
        };
        self.take_off(announced, wanted).await?;
        for &address in wanted {
            if !announced.addresses.contains(&address) {
                self.netlink.add(index, address).await?;
                announced.addresses.push(address);
                tracing::info!(
                    event = "anycast",
                    result = "announced",
                    "announcing {address} on {}: {}",
                    spec.interface,
                    decision.reason()
                );
            }
        }
        if announced.reason != decision.reason() && !decision.announces() {
            tracing::warn!(
                event = "anycast",
                result = "withdrawn",
                "not announcing {:?} on {}: {}",
                spec.addresses,
                spec.interface,
                decision.reason()
            );
        }
        announced.reason = decision.reason();
        Ok(())
    }

    /// Takes every address but those in `keep` off the interface.
    async fn take_off(
        &self,
        announced: &mut Announced,
        keep: &[IpAddr],
    ) -> Result<(), NetlinkError> {
        let Some((name, index)) = announced.interface.clone() else {
            return Ok(());
        };
        for address in announced.addresses.clone() {
            if keep.contains(&address) {
                continue;
            }
            self.netlink.remove(index, address).await?;
            announced.addresses.retain(|a| *a != address);
            tracing::info!(
                event = "anycast",
                result = "withdrawn",
                "withdrew {address} from {name}"
            );
        }
        Ok(())
    }

    /// Takes every address off the interface and forgets it (the
    /// configuration names another, or none).
    async fn leave_interface(&self, announced: &mut Announced) -> Result<(), NetlinkError> {
        self.take_off(announced, &[]).await?;
        announced.interface = None;
        Ok(())
    }

    /// Withdraws for good, answering on `lo` for the grace period first.
    pub async fn stop(&self, steering: &Steering) {
        self.stopping.store(true, Ordering::Relaxed);
        let grace = steering
            .anycast()
            .ok()
            .flatten()
            .map_or(Duration::ZERO, |spec| spec.grace);
        let held: Vec<IpAddr> = self.announced.lock().await.addresses.clone();
        if held.is_empty() {
            return;
        }
        let lo = self.netlink.index("lo").await.ok().flatten();
        if let Some(lo) = lo {
            for &address in &held {
                if let Err(error) = self.netlink.add(lo, address).await {
                    tracing::warn!("keeping {address} on lo while withdrawing: {error}");
                }
            }
        }
        self.decide(steering).await;
        tracing::info!(
            "withdrew the anycast addresses; answering them for {grace:?} more while routers move away"
        );
        tokio::time::sleep(grace).await;
        if let Some(lo) = lo {
            for &address in &held {
                if let Err(error) = self.netlink.remove(lo, address).await {
                    tracing::warn!("removing {address} from lo: {error}");
                }
            }
        }
    }
}

/// Decides for `steering` on every change of what it answers and every
/// second, until the daemon stops.
pub async fn follow(anycast: Arc<Anycast>, steering: Weak<Steering>) {
    let Some(mut changes) = steering.upgrade().map(|s| s.changes()) else {
        return;
    };
    loop {
        let Some(alive) = steering.upgrade() else {
            return;
        };
        if anycast.stopping.load(Ordering::Relaxed) {
            return;
        }
        anycast.decide(&alive).await;
        drop(alive);
        tokio::select! {
            _ = changes.changed() => {}
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}
