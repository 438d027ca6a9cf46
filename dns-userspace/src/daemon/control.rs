//! The daemon answering the control API: each call maps to the running
//! state (`Live`), and each error to what it means for the client.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use dns_common::Counter;
use hickory_proto::rr::Name;

use super::{
    live::{ChangeError, Live},
    signing,
};
use crate::{
    api::{
        Answer, ControlPlane, Refusal, RefusalKind,
        types::{
            AnycastStatus, Applied, DnssecKey, DnssecZone, EndpointInfo, EndpointRef, HealthRow,
            LoadReport, NameQueries, PassedQueries, PolicyCheck, PolicyFile, Registration,
            ServiceDetail, ServiceInfo, Simulation, Stats, Status, TransportQueries, WeightChange,
            ZoneInfo, ZoneRecords,
        },
    },
    backends::RegistryError,
    load::ReportError,
    policy::Pool,
    signer::{Roll, now},
    steering::{OverrideError, Overrides},
    zone::WireName,
};

/// Names in `dnslb stats`.
const TOP_NAMES: usize = 10;

impl From<ChangeError> for Refusal {
    fn from(error: ChangeError) -> Refusal {
        let kind = match &error {
            ChangeError::File(_)
            | ChangeError::Override(_)
            | ChangeError::Registry(RegistryError::NoPool(_))
            | ChangeError::NoRoom(_) => RefusalKind::Invalid,
            ChangeError::UnknownZone(_)
            | ChangeError::NotTheApis(_)
            | ChangeError::Registry(RegistryError::NotRegistered { .. }) => RefusalKind::NotFound,
            ChangeError::Registry(_) => RefusalKind::Failed,
            ChangeError::Poisoned(_)
            | ChangeError::Apply(_)
            | ChangeError::Write { .. }
            | ChangeError::Kept(_)
            | ChangeError::Fleet(_) => RefusalKind::Failed,
        };
        Refusal::new(kind, error)
    }
}

fn failed(error: anyhow::Error) -> Refusal {
    Refusal::new(RefusalKind::Failed, format!("{error:#}"))
}

fn origin(text: &str) -> Answer<Name> {
    let mut name = Name::from_ascii(text).map_err(|error| {
        Refusal::new(
            RefusalKind::Invalid,
            format!("bad zone origin `{text}`: {error}"),
        )
    })?;
    name.set_fqdn(true);
    Ok(name)
}

impl Live {
    /// Changes the drains and weights: the fleet's, when this node is in
    /// one, else its own.
    fn override_everywhere(
        &self,
        what: &str,
        change: impl Fn(&mut Overrides, &[Pool]) -> Result<(), OverrideError>,
    ) -> Result<(), ChangeError> {
        let Some(fleet) = &self.fleet else {
            return self.change_overrides(what, change);
        };
        let pools = self.steering.pools().map_err(ChangeError::Apply)?;
        let current = self.steering.overrides().map_err(ChangeError::Apply)?;
        let result = fleet.change_overrides(&pools, &current, change);
        self.counted(&format!("{what} for the fleet"), result)
    }

    /// What is served now: the answer to a change the fleet applies.
    pub(super) fn serving_now(&self) -> Result<Applied, ChangeError> {
        Ok(Applied {
            zones: self.responder.catalog().zones().count(),
            services: self.steering.services().map_or(0, |s| s.len()),
            kernel_written: 0,
            kernel_removed: 0,
        })
    }
}

impl ControlPlane for Live {
    fn status(&self) -> Answer<Status> {
        Ok(Live::status(self)?)
    }

    fn zones(&self) -> Answer<Vec<ZoneInfo>> {
        Ok(Live::zones(self)?)
    }

    fn dnssec(&self) -> Answer<Vec<DnssecZone>> {
        let catalog = self.responder.catalog();
        let signers = self.responder.signers();
        let mut zones: Vec<DnssecZone> = catalog
            .zones()
            .filter_map(|zone| {
                if let Some(signer) = signers.get(zone.origin()) {
                    return Some(signing::online_status(zone.origin_name(), signer, now()));
                }
                let signing = zone.signing()?;
                Some(DnssecZone {
                    origin: zone.origin_name().to_string(),
                    mode: "presigned".to_owned(),
                    keys: signing
                        .keys
                        .iter()
                        .map(|key| DnssecKey {
                            tag: key.tag,
                            algorithm: u8::from(key.algorithm),
                            algorithm_name: key.algorithm.to_string(),
                            role: if key.key_signing { "ksk" } else { "zsk" }.to_owned(),
                            ds: key.ds.as_ref().map(ToString::to_string),
                            state: None,
                            next_event: None,
                            cds_published: false,
                        })
                        .collect(),
                    signatures: signing.signatures,
                    first_expiration: signing.first_expiration.map(u64::from),
                    signer: None,
                })
            })
            .collect();
        zones.sort_by(|a, b| a.origin.cmp(&b.origin));
        Ok(zones)
    }

    fn roll_key(&self, text: &str, key: Roll) -> Answer<DnssecZone> {
        let origin = origin(text)?;
        let signer = WireName::from_name(&origin)
            .and_then(|wire| self.responder.signers().get(&wire).cloned())
            .ok_or_else(|| {
                Refusal::new(
                    RefusalKind::NotFound,
                    format!("{origin} is not a zone dnslb signs (dnssec = \"online\")"),
                )
            })?;
        let now = now();
        signer
            .roll(key, now)
            .map_err(|error| Refusal::new(RefusalKind::Invalid, error))?;
        tracing::info!("zone {origin}: {key:?} roll started on the operator's word");
        self.steering.notify_change();
        Ok(signing::online_status(&origin, &signer, now))
    }

    fn load_zone(&self, text: &str, file: PathBuf) -> Answer<Applied> {
        let origin = origin(text)?;
        if let Some(fleet) = &self.fleet {
            // Checked here first: a file that does not load is refused
            // before any node tries it.
            crate::zone::load_zone(&origin, &file).map_err(ChangeError::from)?;
            let what = format!(
                "loading zone {origin} from {} for the fleet",
                file.display()
            );
            let result = fleet.assign_zone(&origin.to_ascii(), Some(file));
            return Ok(self.counted(&what, result.and_then(|()| self.serving_now()))?);
        }
        Ok(Live::load_zone(self, origin, file)?)
    }

    fn reload_zone(&self, text: &str) -> Answer<Applied> {
        Ok(Live::reload_zone(self, origin(text)?)?)
    }

    fn release_zone(&self, text: &str) -> Answer<Applied> {
        if self.fleet.is_some() {
            return Err(Refusal::new(
                RefusalKind::Invalid,
                "in a fleet, zones are assigned in its store: `dnslb zone remove` there, or load the file again",
            ));
        }
        Ok(Live::release_zone(self, origin(text)?)?)
    }

    fn remove_zone(&self, text: &str) -> Answer<Applied> {
        let origin = origin(text)?;
        if let Some(fleet) = &self.fleet {
            let what = format!("removing zone {origin} for the fleet");
            let result = fleet.assign_zone(&origin.to_ascii(), None);
            return Ok(self.counted(&what, result.and_then(|()| self.serving_now()))?);
        }
        Ok(Live::remove_zone(self, origin)?)
    }

    fn reload(&self) -> Answer<Applied> {
        Ok(Live::reload(self)?)
    }

    fn services(&self) -> Answer<Vec<ServiceInfo>> {
        self.steering.services().map_err(failed)
    }

    fn service(&self, label: &str) -> Answer<ServiceDetail> {
        self.steering
            .service(label)
            .map_err(failed)?
            .ok_or_else(|| Refusal::new(RefusalKind::NotFound, format!("no service `{label}`")))
    }

    fn endpoints(&self, pool: Option<&str>) -> Answer<Vec<EndpointInfo>> {
        self.steering.endpoints(pool).map_err(failed)
    }

    fn drain(&self, endpoint: EndpointRef) -> Answer<()> {
        let what = format!("draining {}", endpoint.address);
        Ok(self.override_everywhere(&what, |overrides, pools| {
            overrides.drain(endpoint.clone(), pools)
        })?)
    }

    fn undrain(&self, endpoint: EndpointRef) -> Answer<()> {
        let what = format!("undraining {}", endpoint.address);
        Ok(self.override_everywhere(&what, |overrides, pools| {
            overrides.undrain(&endpoint, pools)
        })?)
    }

    fn set_weight(&self, change: WeightChange) -> Answer<()> {
        let what = format!("weight {} for {}", change.weight, change.endpoint.address);
        Ok(self.override_everywhere(&what, |overrides, pools| {
            overrides.set_weight(change.endpoint.clone(), change.weight, pools)
        })?)
    }

    fn clear_weight(&self, endpoint: EndpointRef) -> Answer<()> {
        let what = format!("the file's weight for {}", endpoint.address);
        Ok(self.override_everywhere(&what, |overrides, pools| {
            overrides.clear_weight(&endpoint, pools)
        })?)
    }

    fn register(&self, pool: &str, registration: Registration) -> Answer<Registration> {
        let what = format!("registering {} in pool {pool}", registration.address);
        let registry = self.backends.registry();
        let result = match &self.fleet {
            Some(fleet) => registry
                .instances(pool)
                .map_err(ChangeError::from)
                .map(|_| registry.stamped(registration))
                .and_then(|stamped| fleet.put_instance(pool, &stamped).map(|()| stamped)),
            None => registry
                .register(pool, registration)
                .map_err(ChangeError::from),
        };
        Ok(self.counted(&what, result)?)
    }

    fn deregister(&self, pool: &str, address: IpAddr) -> Answer<()> {
        let what = format!("deregistering {address} from pool {pool}");
        let registry = self.backends.registry();
        let result = match &self.fleet {
            Some(fleet) => registry
                .registered(pool, address)
                .map_err(ChangeError::from)
                .and_then(|_| fleet.delete_instance(pool, address)),
            None => registry
                .deregister(pool, address)
                .map_err(ChangeError::from),
        };
        Ok(self.counted(&what, result)?)
    }

    /// Not counted or logged as a change: instances renew all the time.
    fn heartbeat(&self, pool: &str, address: IpAddr) -> Answer<Registration> {
        let registry = self.backends.registry();
        let result = match &self.fleet {
            Some(fleet) => registry
                .renewed(pool, address)
                .map_err(ChangeError::from)
                .and_then(|renewed| fleet.put_instance(pool, &renewed).map(|()| renewed)),
            None => registry.heartbeat(pool, address).map_err(ChangeError::from),
        };
        Ok(result?)
    }

    /// Not counted or logged as a change: agents report all the time.
    fn push_load(&self, pool: &str, address: IpAddr, report: LoadReport) -> Answer<EndpointInfo> {
        // In a fleet the store takes it, once this node finds it valid,
        // and every node (this one too) applies it from there.
        let pushed = match &self.fleet {
            Some(fleet) => self
                .steering
                .check_pushed_load(pool, address, report.load.reading())
                .map(|_| fleet.put_load(pool, address, report.load)),
            None => self
                .steering
                .push_load(pool, address, report.load.reading(), Duration::ZERO)
                .map(Ok),
        };
        pushed.map_err(|error| {
            let kind = match &error {
                ReportError::NoPool(_) | ReportError::NoEndpoint { .. } => RefusalKind::NotFound,
                ReportError::NoLoad(_)
                | ReportError::Pulled { .. }
                | ReportError::Reading { .. } => RefusalKind::Invalid,
                ReportError::Poisoned(_) => RefusalKind::Failed,
            };
            Refusal::new(kind, error)
        })??;
        self.steering
            .endpoints(Some(pool))
            .map_err(failed)?
            .into_iter()
            .find(|endpoint| endpoint.address == address)
            .ok_or_else(|| {
                Refusal::new(
                    RefusalKind::NotFound,
                    format!("no endpoint {address} in pool `{pool}`"),
                )
            })
    }

    fn health(&self) -> Answer<Vec<HealthRow>> {
        self.steering.health().map_err(failed)
    }

    fn stats(&self) -> Answer<Stats> {
        let kernel = match &self.dataplane {
            Some(dataplane) => Some(
                dataplane
                    .lock()
                    .map_err(|error| failed(error.into()))?
                    .counters()
                    .map_err(|error| failed(error.into()))?,
            ),
            None => None,
        };
        let kernel_passed = kernel.map_or_else(Vec::new, |kernel| {
            Counter::ALL
                .iter()
                .filter_map(|&counter| {
                    Some(PassedQueries {
                        reason: counter.pass_reason()?.to_owned(),
                        queries: kernel.get(counter),
                    })
                })
                .collect()
        });
        Ok(Stats {
            uptime_seconds: self.uptime(),
            kernel_answered: kernel.map_or(0, |kernel| kernel.get(Counter::Answered)),
            kernel_passed,
            userspace_answered: vec![TransportQueries {
                transport: "all".to_owned(),
                queries: self.metrics.userspace_queries(),
            }],
            branches: self.steering.branch_answers().map_err(failed)?,
            top_names: (self.metrics.top_names.top(TOP_NAMES).into_iter())
                .map(|(name, queries)| NameQueries { name, queries })
                .collect(),
        })
    }

    fn simulate(&self, name: &str, client: &str, qtype: Option<&str>) -> Answer<Simulation> {
        Live::simulate(self, name, client, qtype)
    }

    fn zone_records(&self, text: &str, search: &str, limit: usize) -> Answer<ZoneRecords> {
        Ok(Live::zone_records(self, &origin(text)?, search, limit)?)
    }

    fn policy(&self) -> Answer<PolicyFile> {
        self.policy_file()
    }

    fn check_policy(&self, text: &str) -> Answer<PolicyCheck> {
        Live::check_policy(self, text)
    }

    fn apply_policy(&self, text: &str) -> Answer<Applied> {
        Live::apply_policy(self, text)
    }

    fn set_anycast(&self, announce: bool) -> Answer<AnycastStatus> {
        let anycast = self.anycast.as_ref().ok_or_else(|| {
            Refusal::new(
                RefusalKind::NotFound,
                "this node has no [anycast] in its policy file (it is read at start)",
            )
        })?;
        let what = if announce {
            "announcing the anycast addresses"
        } else {
            "withdrawing the anycast addresses"
        };
        // Kept first: a withdrawal the next start would forget is refused.
        let status = self
            .kept
            .keep_anycast_withdrawn(!announce)
            .map_err(ChangeError::from)
            .map(|()| {
                tokio::runtime::Handle::current()
                    .block_on(anycast.set_announce(&self.steering, announce))
            });
        Ok(self.counted(what, status)?)
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.steering.changes()
    }
}
