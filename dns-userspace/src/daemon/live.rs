//! The running daemon as the control API and SIGHUP change it: which zones
//! are served and from where, and the one path every change takes.
//!
//! A change is all or nothing: everything it needs is read and checked
//! first, and only then applied, to the services, the kernel maps and the
//! responder in that order (the no-gap rule of `dataplane::sync_hot`). A
//! change that fails its checks leaves everything serving as it was and
//! says why. One change runs at a time.

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use hickory_proto::rr::Name;

use super::{
    anycast::Anycast,
    cookies::Cookies,
    fleet::Fleet,
    kept::{Kept, KeptError, ZoneChanges},
    secondary::Followers,
    serials::{SerialWrite, hold_serials},
    signing::{self, Signing},
};
use crate::{
    api::types::{
        Applied, ClientNetworkFill, EndpointCounts, KernelSignatures, MapFill, PassedUnsigned,
        RecordRow, Registration, Status, ZoneInfo, ZoneRecords, ZoneSource,
    },
    backends::Backends,
    cli::{RunArgs, ZoneArg},
    config::{BranchLabels, Config, load_config, parse_config},
    dataplane::{DataplaneError, HotType, SharedDataplane, SyncReport, hot_entries, sync_hot},
    file_error::{FileError, FileErrors},
    hooks::Hooks,
    metrics::Metrics,
    server::{Responder, Signers, TransferRules, notify_changes},
    shared::{Poisoned, Shared},
    steering::{OverrideError, Overrides, Steering, unanswerable_services},
    zone::{Catalog, WireName, load_zone},
};

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The zone files or the policy file have problems: all of them.
    #[error(transparent)]
    File(#[from] FileErrors),
    #[error(transparent)]
    Override(#[from] OverrideError),
    #[error(transparent)]
    Registry(#[from] crate::backends::RegistryError),
    #[error("no zone {0} is being served")]
    UnknownZone(Name),
    #[error(
        "zone {0} is served as the files name it: the control API has no change of it to release"
    )]
    NotTheApis(Name),
    /// The change could not be kept in the state directory: nothing was
    /// applied (or, at start, what was kept cannot be read).
    #[error("keeping the change across restarts: {0}")]
    Kept(#[from] KeptError),
    /// The policy file could not be replaced: nothing was applied.
    #[error("writing {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The kernel maps cannot hold what the change needs: refused before
    /// anything was applied, in the kernel or the daemon.
    #[error("refused: {0}")]
    NoRoom(DataplaneError),
    #[error(transparent)]
    Poisoned(#[from] Poisoned),
    /// A change for the fleet that its store did not take: nothing changed
    /// anywhere.
    #[error(transparent)]
    Fleet(#[from] super::fleet::FleetError),
    /// Checked and valid, but applying it failed part way (a kernel map
    /// full, say): the daemon serves the new state, the kernel passes on
    /// what it could not take.
    #[error("applying the change: {0:#}")]
    Apply(anyhow::Error),
}

impl From<FileError> for ChangeError {
    fn from(error: FileError) -> ChangeError {
        ChangeError::File(error.into())
    }
}

/// A zone being served, and where it was named.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ServedZone {
    origin: Name,
    file: PathBuf,
    source: ZoneSource,
}

/// The zones being served, and the control API's changes to the zones of
/// the command line and the policy file (a file per origin, or removed),
/// which outlive reloads.
#[derive(Debug, Default)]
struct Served {
    zones: Vec<ServedZone>,
    api_changes: ZoneChanges,
}

pub struct Live {
    args: RunArgs,
    started: Instant,
    pub responder: Arc<Responder>,
    pub steering: Arc<Steering>,
    pub backends: Arc<Backends>,
    hooks: Arc<Hooks>,
    pub dataplane: Option<SharedDataplane>,
    pub cookies: Arc<Shared<Cookies>>,
    pub metrics: Arc<Metrics>,
    served: Shared<Served>,
    /// Where the operator's changes are kept across restarts.
    pub kept: Kept,
    /// The fleet this node belongs to (`--cluster`), if any.
    pub fleet: Option<Arc<Fleet>>,
    pub anycast: Option<Arc<Anycast>>,
    /// The secondary zones' followers.
    followers: Followers,
    /// This `Live`, for the followers it starts (set once it is shared).
    this: std::sync::OnceLock<std::sync::Weak<Live>>,
}

/// The running parts a `Live` changes.
pub struct LiveParts {
    pub responder: Arc<Responder>,
    pub steering: Arc<Steering>,
    pub backends: Arc<Backends>,
    pub hooks: Arc<Hooks>,
    pub dataplane: Option<SharedDataplane>,
    pub cookies: Arc<Shared<Cookies>>,
    pub metrics: Arc<Metrics>,
    pub fleet: Option<Arc<Fleet>>,
    pub anycast: Option<Arc<Anycast>>,
}

/// What start-up loaded: the catalog and configuration to serve.
pub struct Loaded {
    pub catalog: Catalog,
    pub config: Config,
    zones: Vec<ServedZone>,
    /// The control API's zone changes served on top of the files.
    api_changes: ZoneChanges,
    /// The signers of the zones dnslb signs, to put in use with the
    /// catalog.
    pub signing: Signing,
}

/// Reads the policy file (if any; `policy_text` in its place when given)
/// and every zone: those of the command line, of the policy file, and
/// `api_changes` on top. Nothing is changed.
fn load(
    args: &RunArgs,
    labels: Option<&BranchLabels>,
    api_changes: &BTreeMap<Name, Option<PathBuf>>,
    policy_text: Option<&str>,
    signers: &Signers,
) -> Result<Loaded, ChangeError> {
    let mut config = match (&args.config, policy_text) {
        (Some(path), Some(text)) => parse_config(path, text, labels)?,
        (Some(path), None) => load_config(path, labels)?,
        (None, _) => Config::default(),
    };
    let named = |zones: &[ZoneArg], source| {
        zones
            .iter()
            .map(|zone| ServedZone {
                origin: zone.origin.clone(),
                file: zone.file.clone(),
                source,
            })
            .collect::<Vec<_>>()
    };
    let mut zones: Vec<ServedZone> = named(&args.zones, ZoneSource::CommandLine);
    zones.extend(named(&config.zones, ZoneSource::PolicyFile));
    for (origin, change) in api_changes {
        zones.retain(|zone| zone.origin != *origin);
        if let Some(file) = change {
            zones.push(ServedZone {
                origin: origin.clone(),
                file: file.clone(),
                source: ZoneSource::ControlApi,
            });
        }
    }
    let copied: HashSet<&Name> = config
        .zones
        .iter()
        .filter(|zone| zone.transfer.primary.is_some())
        .map(|zone| &zone.origin)
        .collect();
    let mut catalog = Catalog::default();
    let mut problems = Vec::new();
    let policies = signing::policies(args, &config);
    let mut signing = Signing::default();
    for zone in &zones {
        // A secondary zone without a copy yet is served once its first
        // transfer is in.
        if copied.contains(&zone.origin) && !zone.file.exists() {
            tracing::info!(
                "zone {}: no copy in {} yet, waiting for the first transfer",
                zone.origin,
                zone.file.display()
            );
            continue;
        }
        let started = Instant::now();
        let mut loaded = match load_zone(&zone.origin, &zone.file) {
            Ok(loaded) => loaded,
            Err(error) => {
                problems.push(error);
                continue;
            }
        };
        if let Some(policy) = policies.get(&zone.origin.to_lowercase())
            && let Err(problem) = signing.add(args, &mut loaded, &zone.file, policy, signers)
        {
            problems.push(problem);
            continue;
        }
        if copied.contains(&zone.origin) && super::secondary::expired(&loaded, &zone.file) {
            tracing::warn!(
                "zone {}: the copy in {} is past its SOA's expire, waiting for the primary",
                zone.origin,
                zone.file.display()
            );
            continue;
        }
        tracing::info!(
            "loaded zone {} from {}: {} names in {:.2} s",
            zone.origin,
            zone.file.display(),
            loaded.nodes().count(),
            started.elapsed().as_secs_f64()
        );
        catalog.insert(loaded);
    }
    let served: Vec<WireName> = zones
        .iter()
        .filter_map(|zone| WireName::from_name(&zone.origin))
        .collect();
    problems.extend(signing::unserved(args, &served));
    for service in &mut config.services {
        service.signed = catalog
            .find(service.name.as_bytes())
            .is_some_and(|zone| zone.is_signed());
    }
    // Services are checked against the zones once every zone reads.
    if problems.is_empty() {
        problems = unanswerable_services(&config, &catalog);
    }
    FileErrors::check(problems)?;
    Ok(Loaded {
        catalog,
        config,
        zones,
        api_changes: api_changes.clone(),
        signing,
    })
}

/// Writes the serials dnslb raised into their zone files: a file that
/// cannot be written refuses the change.
fn write_serials(serials: &[SerialWrite]) -> Result<(), ChangeError> {
    for serial in serials {
        serial.write().map_err(|source| ChangeError::Write {
            path: serial.file.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Who may transfer which zone and who is told of changes: the policy
/// file's `allow_transfer` and `notify`, for whichever file serves it.
pub fn transfer_rules(config: &Config) -> TransferRules {
    config
        .zones
        .iter()
        .filter_map(|zone| Some((WireName::from_name(&zone.origin)?, zone.transfer.clone())))
        .collect()
}

/// The first load, at start.
/// What start-up serves: the files, with the control API's zone changes
/// that the state directory kept on top.
pub fn load_at_start(args: &RunArgs) -> Result<Loaded, ChangeError> {
    let changes = Kept::new(args.state_dir.clone()).zone_changes()?;
    load(args, None, &changes, None, &Signers::default())
}

/// Every address and port `listen` answers on: itself, or for a wildcard
/// address every address of the host of its family (both, for `[::]`,
/// which takes IPv4 too).
fn answering_on(listen: std::net::SocketAddr) -> Vec<String> {
    if !listen.ip().is_unspecified() {
        return vec![listen.to_string()];
    }
    let addresses = nix::ifaddrs::getifaddrs()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let address = entry.address?;
            let ip = match (address.as_sockaddr_in(), address.as_sockaddr_in6()) {
                (Some(v4), _) => std::net::IpAddr::V4(v4.ip()),
                (_, Some(v6)) => std::net::IpAddr::V6(v6.ip()),
                _ => return None,
            };
            (listen.is_ipv6() || ip.is_ipv4())
                .then(|| std::net::SocketAddr::new(ip, listen.port()).to_string())
        });
    addresses.collect()
}

impl Live {
    pub fn new(args: RunArgs, loaded_zones: &Loaded, parts: LiveParts) -> Live {
        let LiveParts {
            responder,
            steering,
            backends,
            hooks,
            dataplane,
            cookies,
            metrics,
            fleet,
            anycast,
        } = parts;
        Live {
            kept: Kept::new(args.state_dir.clone()),
            args,
            started: Instant::now(),
            responder,
            steering,
            backends,
            hooks,
            dataplane,
            cookies,
            metrics,
            served: Shared::new(
                "the list of zones served",
                Served {
                    zones: loaded_zones.zones.clone(),
                    api_changes: loaded_zones.api_changes.clone(),
                },
            ),
            fleet,
            anycast,
            followers: Followers::default(),
            this: std::sync::OnceLock::new(),
        }
    }

    /// Starts following the primaries of `zones`' secondary zones; from
    /// then on, each reload follows its own.
    pub fn follow_primaries(self: &Arc<Live>, zones: &[ZoneArg]) {
        let this = self.this.get_or_init(|| Arc::downgrade(self));
        self.followers.sync(this, zones);
    }

    pub fn args(&self) -> &RunArgs {
        &self.args
    }

    /// Counts `result` as an applied or refused change, and logs it.
    pub(super) fn counted<T>(
        &self,
        what: &str,
        result: Result<T, ChangeError>,
    ) -> Result<T, ChangeError> {
        match &result {
            Ok(_) => {
                self.metrics.changes.count_applied();
                tracing::info!(
                    event = "change",
                    change = what,
                    result = "applied",
                    "{what}: applied"
                );
            }
            Err(ChangeError::Apply(error)) => {
                self.metrics.changes.count_applied();
                tracing::error!(
                    event = "change",
                    change = what,
                    result = "applied",
                    error = format!("{error:#}").as_str(),
                    "{what}: applied, but {error:#}"
                );
            }
            Err(error) => {
                self.metrics.changes.refused.inc();
                tracing::error!(
                    event = "change",
                    change = what,
                    result = "refused",
                    error = %error,
                    "{what} failed, still serving as before: {error}"
                );
            }
        }
        result
    }

    /// SIGHUP and `POST /v1/reload`: reads the policy file and every zone
    /// file again.
    pub fn reload(&self) -> Result<Applied, ChangeError> {
        let result = self.reload_inner();
        self.counted("reload", result)
    }

    fn reload_inner(&self) -> Result<Applied, ChangeError> {
        self.reload_with(None, |_| Ok(()))
    }

    /// `POST /v1/zones/{origin}/release`: the control API's change to
    /// `origin` (a zone it loaded, or removed) is dropped, and the zone is
    /// served as the files name it again (or no longer, if none does).
    pub fn release_zone(&self, origin: Name) -> Result<Applied, ChangeError> {
        let what = format!("handing zone {origin} back to the files");
        let result = self.reload_releasing(None, Some(&origin), |_| Ok(()));
        self.counted(&what, result)
    }

    /// Reloads with `policy_text` in place of the policy file (`None`:
    /// the file as it is); `commit` runs once everything is read and
    /// checked, before anything is applied, and can still refuse.
    pub(super) fn reload_with(
        &self,
        policy_text: Option<&str>,
        commit: impl FnOnce(&Loaded) -> Result<(), ChangeError>,
    ) -> Result<Applied, ChangeError> {
        self.reload_releasing(policy_text, None, commit)
    }

    /// As [`Live::reload_with`], without the control API's change to
    /// `release`, if given (which must exist), from then on.
    fn reload_releasing(
        &self,
        policy_text: Option<&str>,
        release: Option<&Name>,
        commit: impl FnOnce(&Loaded) -> Result<(), ChangeError>,
    ) -> Result<Applied, ChangeError> {
        let mut served = self.served.lock()?;
        let mut api_changes = served.api_changes.clone();
        if let Some(origin) = release
            && api_changes.remove(origin).is_none()
        {
            return Err(ChangeError::NotTheApis(origin.clone()));
        }
        let mut loaded = self.load_with(&api_changes, policy_text)?;
        let transfers = transfer_rules(&loaded.config);
        let zone_files = loaded.zones.iter().map(|z| (&z.origin, z.file.as_path()));
        let serials = hold_serials(
            &self.responder.catalog(),
            &mut loaded.catalog,
            zone_files,
            &transfers,
        )?;
        self.check_room(&loaded.catalog, Some(&loaded.config))?;
        write_serials(&serials)?;
        commit(&loaded)?;
        if release.is_some() {
            self.kept.keep_zone_changes(&api_changes)?;
        }
        served.api_changes = api_changes;
        let services = loaded.config.services.len();
        let (sources, hooks) = (loaded.config.sources.clone(), loaded.config.hooks.clone());
        let zones = loaded.config.zones.clone();
        self.steering
            .reload(loaded.config)
            .map_err(ChangeError::Apply)?;
        self.backends.apply(&sources).map_err(ChangeError::Apply)?;
        self.hooks.set(&hooks);
        self.responder.set_transfer_rules(transfers);
        served.zones = loaded.zones;
        self.responder.set_signers(loaded.signing.install());
        let applied = self.serve_catalog(loaded.catalog, services);
        if let Some(this) = self.this.get() {
            self.followers.sync(this, &zones);
        }
        applied
    }

    /// `PUT /v1/zones/{origin}`: serves `origin` from `file`, added or in
    /// place of the file it was served from.
    pub fn load_zone(&self, origin: Name, file: PathBuf) -> Result<Applied, ChangeError> {
        let what = format!("loading zone {origin} from {}", file.display());
        let result = self.change_zone(origin, Some(file));
        self.counted(&what, result)
    }

    /// `POST /v1/zones/{origin}/reload`: reads the zone's file again. The
    /// zone stays where it was named: a zone of the policy file stays the
    /// policy file's (a later edit of that file is served on reload).
    pub fn reload_zone(&self, origin: Name) -> Result<Applied, ChangeError> {
        let what = format!("reloading zone {origin}");
        let result = self
            .served_file(&origin)
            .and_then(|(file, source)| self.serve_zone_file(origin, Some(file), source));
        self.counted(&what, result)
    }

    /// The fleet's policy file, new to this node: written over the policy
    /// file (the last state, for when etcd cannot be reached) and applied,
    /// all or nothing, as an edit through the control API is.
    pub fn apply_fleet_policy(&self, text: &str) {
        // `--cluster` requires `--config`.
        let Some(file) = self.args.config.clone() else {
            return;
        };
        if std::fs::read_to_string(&file).is_ok_and(|current| current == text) {
            return;
        }
        let result = self.replace_policy(&file, text);
        let _ = self.counted("the policy file from the fleet", result);
    }

    /// Reloads with `text` as the policy file, written over `file` once
    /// everything is read and checked and before anything is applied:
    /// all or nothing.
    pub(super) fn replace_policy(&self, file: &Path, text: &str) -> Result<Applied, ChangeError> {
        self.reload_with(Some(text), |_| {
            crate::durable::replace_file(file, text.as_bytes()).map_err(|error| {
                ChangeError::Write {
                    path: file.to_owned(),
                    source: error,
                }
            })
        })
    }

    /// The fleet's zone `origin`, served from `file` (or no longer).
    pub fn assign_zone(&self, origin: &str, file: Option<PathBuf>) {
        let Ok(mut name) = Name::from_ascii(origin) else {
            tracing::error!("the fleet's zone `{origin}` is not a domain name");
            return;
        };
        name.set_fqdn(true);
        let what = match &file {
            Some(file) => format!("zone {name} from {} for the fleet", file.display()),
            None => format!("removing zone {name} for the fleet"),
        };
        let result = self.change_zone(name, file);
        let _ = self.counted(&what, result);
    }

    /// An instance another node of the fleet registered (or renewed).
    pub fn restore_instance(&self, pool: &str, registration: Registration) {
        if let Err(error) = self.backends.registry().restore(pool, registration) {
            tracing::warn!("the fleet's instance of pool {pool}: {error}");
        }
    }

    /// An instance the fleet no longer has.
    pub fn forget_instance(&self, pool: &str, address: std::net::IpAddr) {
        match self.backends.registry().deregister(pool, address) {
            Ok(()) | Err(crate::backends::RegistryError::NotRegistered { .. }) => {}
            Err(error) => tracing::warn!("the fleet's instance of pool {pool}: {error}"),
        }
    }

    /// The file `origin` is served from, and where that was named.
    fn served_file(&self, origin: &Name) -> Result<(PathBuf, ZoneSource), ChangeError> {
        let served = self.served.lock()?;
        served
            .zones
            .iter()
            .find(|zone| zone.origin == *origin)
            .map(|zone| (zone.file.clone(), zone.source))
            .ok_or_else(|| ChangeError::UnknownZone(origin.clone()))
    }

    /// `DELETE /v1/zones/{origin}`: stops serving `origin`, unless a
    /// service answers in it.
    pub fn remove_zone(&self, origin: Name) -> Result<Applied, ChangeError> {
        let what = format!("removing zone {origin}");
        let result = self.change_zone(origin, None);
        self.counted(&what, result)
    }

    /// A secondary zone's new copy, written to `file`: served as a reload
    /// of that file is, under the same no-gap rule.
    pub fn serve_transferred(&self, origin: &Name, file: PathBuf) -> Result<Applied, ChangeError> {
        let what = format!("transferring zone {origin}");
        let result = self.serve_zone_file(origin.clone(), Some(file), ZoneSource::PolicyFile);
        self.counted(&what, result)
    }

    /// A secondary zone past its expire: no longer served until its
    /// primary gives a copy again.
    pub fn withdraw_transferred(
        &self,
        origin: &Name,
        file: PathBuf,
    ) -> Result<Applied, ChangeError> {
        let what = format!(
            "expiring zone {origin}: no word from its primary within the SOA's expire (copy in {})",
            file.display()
        );
        let result = self.serve_zone_file(origin.clone(), None, ZoneSource::PolicyFile);
        self.counted(&what, result)
    }

    /// Serves `origin` from `file`, or (with `None`) no longer: the other
    /// zones and the policy stay as loaded. Recorded as the control API's
    /// change, which outlives reloads of the files.
    fn change_zone(&self, origin: Name, file: Option<PathBuf>) -> Result<Applied, ChangeError> {
        self.serve_zone_file(origin, file, ZoneSource::ControlApi)
    }

    /// Serves `origin` from `file` (or no longer), named by `source`; only
    /// the control API's changes are recorded to outlive reloads.
    fn serve_zone_file(
        &self,
        origin: Name,
        file: Option<PathBuf>,
        source: ZoneSource,
    ) -> Result<Applied, ChangeError> {
        let mut served = self.served.lock()?;
        let mut catalog = self.responder.catalog().as_ref().clone();
        let origin_wire =
            WireName::from_name(&origin).ok_or(ChangeError::UnknownZone(origin.clone()))?;
        let mut serials = Vec::new();
        match &file {
            Some(file) => {
                let mut zone = load_zone(&origin, file)?;
                // A zone dnslb signs stays signed, whichever file serves it.
                if self.responder.signers().contains_key(&origin_wire) {
                    zone.sign_online();
                }
                catalog.insert(zone);
                serials = hold_serials(
                    &self.responder.catalog(),
                    &mut catalog,
                    [(&origin, file.as_path())],
                    &self.responder.transfer_rules(),
                )?;
            }
            None => {
                if catalog.remove(&origin_wire).is_none() {
                    return Err(ChangeError::UnknownZone(origin));
                }
            }
        }
        let unanswerable = self
            .steering
            .unanswerable_services(&catalog)
            .map_err(ChangeError::Apply)?;
        FileErrors::check(unanswerable)?;
        served.zones.retain(|zone| zone.origin != origin);
        if let Some(file) = &file {
            served.zones.push(ServedZone {
                origin: origin.clone(),
                file: file.clone(),
                source,
            });
        }
        self.check_room(&catalog, None)?;
        write_serials(&serials)?;
        if source == ZoneSource::ControlApi {
            let mut changes = served.api_changes.clone();
            changes.insert(origin, file);
            self.kept.keep_zone_changes(&changes)?;
            served.api_changes = changes;
        }
        let services = self.steering.services().map_or(0, |s| s.len());
        self.serve_catalog(catalog, services)
    }

    /// Checks that the kernel maps can hold everything `catalog` and the
    /// services of `config` (the current ones with `None`) need, in the
    /// middle of the change as after it: a change that does not fit is
    /// refused whole, so that the kernel and the daemon never answer from
    /// different states.
    fn check_room(&self, catalog: &Catalog, config: Option<&Config>) -> Result<(), ChangeError> {
        let Some(dataplane) = &self.dataplane else {
            return Ok(());
        };
        let (services, networks) = self
            .steering
            .kernel_demand(config)
            .map_err(ChangeError::Apply)?;
        let steered: HashSet<(&[u8], HotType)> = services
            .iter()
            .map(|(name, hot_type)| (name.wire(), *hot_type))
            .collect();
        let zone_names = catalog
            .zones()
            .flat_map(|zone| hot_entries(zone))
            .flatten()
            .map(|(name, value)| (name, value.hot_type()))
            .filter(|(name, hot_type)| !steered.contains(&(name.wire(), *hot_type)));
        let names: Vec<_> = zone_names.chain(services.iter().cloned()).collect();
        dataplane
            .lock()?
            .check_room(names, networks)
            .map_err(ChangeError::NoRoom)
    }

    /// `text` as the policy file, checked as a reload would be; nothing
    /// is applied.
    pub(super) fn check_policy_text(&self, text: &str) -> Result<Loaded, ChangeError> {
        self.load_with(&self.served.lock()?.api_changes, Some(text))
    }

    /// Everything a reload reads, against what serves now: the labels of
    /// the branches, and the zones the control API changed.
    /// The files as they are now (the policy as `policy_text`, when
    /// given), with `api_changes` on top.
    fn load_with(
        &self,
        api_changes: &ZoneChanges,
        policy_text: Option<&str>,
    ) -> Result<Loaded, ChangeError> {
        load(
            &self.args,
            Some(&self.steering.branch_labels()),
            api_changes,
            policy_text,
            &self.responder.signers(),
        )
    }

    /// Makes `catalog` the one served: the kernel's names first, then the
    /// responder's (a query passed on in between gets the old answer).
    fn serve_catalog(&self, catalog: Catalog, services: usize) -> Result<Applied, ChangeError> {
        let old = self.responder.catalog();
        let report = match &self.dataplane {
            Some(dataplane) => {
                let steered = self.steering.steered_names().map_err(ChangeError::Apply)?;
                let signers = self.responder.signers();
                let mut dataplane = dataplane.lock()?;
                Some(sync_hot(
                    &mut dataplane,
                    (Some(&old), &catalog),
                    &|name, hot_type| steered.contains(&(WireName::from(name), hot_type)),
                    &|origin| super::online_signer(&signers, origin),
                ))
            }
            None => None,
        };
        let zones = catalog.zones().count();
        self.responder.set_catalog(catalog);
        self.steering.notify_change();
        notify_changes(
            &old,
            &self.responder.catalog(),
            &self.responder.transfer_rules(),
            self.responder.transfer_counts(),
        );
        let report = match report {
            Some(Ok(report)) => report,
            Some(Err(error)) => return Err(ChangeError::Apply(error.into())),
            None => SyncReport::default(),
        };
        for skip in &report.skipped {
            tracing::warn!("{} is answered from userspace: {}", skip.name, skip.reason);
        }
        Ok(Applied {
            zones,
            services,
            kernel_written: report.written,
            kernel_removed: report.removed,
        })
    }

    /// `GET /v1/zones`.
    pub fn zones(&self) -> Result<Vec<ZoneInfo>, ChangeError> {
        let served = self.served.lock()?;
        let catalog = self.responder.catalog();
        let mut zones: Vec<ZoneInfo> = served
            .zones
            .iter()
            .filter_map(|zone| {
                let origin = WireName::from_name(&zone.origin)?;
                let loaded = catalog.get(&origin)?;
                Some(ZoneInfo {
                    origin: zone.origin.to_string(),
                    file: zone.file.clone(),
                    source: zone.source,
                    serial: loaded.serial(),
                    names: loaded.nodes().count(),
                    signed: loaded.is_signed(),
                })
            })
            .collect();
        zones.sort_by(|a, b| a.origin.cmp(&b.origin));
        Ok(zones)
    }

    /// `GET /v1/zones/{origin}/records`: the records of a zone whose name,
    /// type or data contains `search` (any case), sorted by name; the first
    /// `limit` of them.
    pub fn zone_records(
        &self,
        origin: &Name,
        search: &str,
        limit: usize,
    ) -> Result<ZoneRecords, ChangeError> {
        let catalog = self.responder.catalog();
        let zone = WireName::from_name(origin)
            .and_then(|wire| catalog.get(&wire).cloned())
            .ok_or_else(|| ChangeError::UnknownZone(origin.clone()))?;
        let search = search.trim().to_ascii_lowercase();
        let mut records: Vec<RecordRow> = zone
            .records()
            .map(|record| RecordRow {
                name: record.name.to_string(),
                ttl: record.ttl,
                record_type: record.record_type().to_string(),
                data: record.data.to_string(),
            })
            .filter(|row| {
                search.is_empty()
                    || [&row.name, &row.record_type, &row.data]
                        .iter()
                        .any(|field| field.to_ascii_lowercase().contains(&search))
            })
            .collect();
        records.sort_by(|a, b| (&a.name, &a.record_type).cmp(&(&b.name, &b.record_type)));
        let matching = records.len();
        records.truncate(limit);
        Ok(ZoneRecords {
            origin: origin.to_string(),
            matching,
            records,
        })
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Result<Status, ChangeError> {
        let (kernel_maps, client_networks, kernel_signatures) = match &self.dataplane {
            Some(dataplane) => {
                // The steering state first, and released: whoever holds
                // both takes the steering state before the dataplane.
                let (entries, largest_service) = self
                    .steering
                    .kernel_networks()
                    .map_err(ChangeError::Apply)?;
                let dataplane = dataplane.lock()?;
                let networks = ClientNetworkFill {
                    entries,
                    capacity: dataplane.capacity(),
                    largest_service,
                };
                let (signed_values, entries) = dataplane.signed_values();
                let mut passed: Vec<PassedUnsigned> = dataplane
                    .passed_unsigned()
                    .map(|(name, hot_type, reason)| PassedUnsigned {
                        name: WireName::from(name.wire()).to_string(),
                        record_type: hot_type.name().to_owned(),
                        reason: reason.to_owned(),
                    })
                    .collect();
                passed.sort_by(|a, b| (&a.name, &a.record_type).cmp(&(&b.name, &b.record_type)));
                let signatures = KernelSignatures {
                    signed_values,
                    entries,
                    passed,
                };
                (dataplane.map_fill(), Some(networks), Some(signatures))
            }
            None => (Vec::<MapFill>::new(), None, None),
        };
        Ok(Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            interface: self.dataplane.as_ref().and(self.args.iface.clone()),
            xdp_mode: match (&self.dataplane, self.args.xdp_mode) {
                (None, _) => "off".to_owned(),
                (Some(_), mode) => mode.name().to_owned(),
            },
            uptime_seconds: self.started.elapsed().as_secs(),
            zones: self.responder.catalog().zones().count(),
            services: self.steering.services().map_or(0, |s| s.len()),
            kernel_maps,
            client_networks,
            kernel_signatures,
            fleet: self.fleet.as_ref().map(|fleet| fleet.status()),
            anycast: self.anycast.as_ref().map(|anycast| anycast.status()),
            overrides: self
                .steering
                .overrides()
                .map_err(ChangeError::Apply)?
                .in_force(),
            state_dir: self.kept.dir().to_owned(),
            answering_on: answering_on(self.args.listen),
            policy_file: self.args.config.clone(),
            control_socket: self.args.control_socket.clone(),
            control_listen: self.args.control_listen.map(|addr| addr.to_string()),
            endpoints: {
                let endpoints = self.steering.endpoints(None).map_err(ChangeError::Apply)?;
                EndpointCounts {
                    total: endpoints.len(),
                    down: endpoints.iter().filter(|e| !e.healthy).count(),
                    drained: endpoints.iter().filter(|e| e.drained).count(),
                }
            },
        })
    }

    /// Changes the endpoint overrides (drain, undrain, weight).
    pub fn change_overrides(
        &self,
        what: &str,
        change: impl FnOnce(&mut Overrides, &[crate::policy::Pool]) -> Result<(), OverrideError>,
    ) -> Result<(), ChangeError> {
        let keep = |overrides: &Overrides| self.kept.keep_overrides(overrides);
        let result = self
            .steering
            .change_overrides(change, keep)
            .map_err(|error| match error.downcast::<OverrideError>() {
                Ok(invalid) => ChangeError::Override(invalid),
                Err(other) => match other.downcast::<KeptError>() {
                    Ok(unkept) => ChangeError::Kept(unkept),
                    Err(other) => ChangeError::Apply(other),
                },
            });
        self.counted(what, result)
    }

    pub fn uptime(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}
