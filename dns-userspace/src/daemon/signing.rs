//! The zones dnslb signs: their signers, made or kept across reloads, and
//! the clock that rolls their keys and renews their signatures.

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::Duration};

use hickory_proto::rr::Name;

use super::{kept::Kept, privileges::Target};
use crate::{
    api::types::{DnssecKey, DnssecZone, SignerInfo},
    cli::RunArgs,
    config::Config,
    dataplane::{KernelClock, SharedDataplane, renew_signatures},
    file_error::FileError,
    server::{Responder, Signers, notify_version},
    signer::{SigningPolicy, ZoneSigner, keys::KeyRing, now},
    steering::Steering,
    zone::{WireName, Zone},
};

/// How each zone dnslb signs is signed: the policy file's `dnssec`, and
/// `--sign` for the command line's zones (with the default policy).
pub fn policies(args: &RunArgs, config: &Config) -> HashMap<Name, SigningPolicy> {
    let mut policies: HashMap<Name, SigningPolicy> = args
        .sign
        .iter()
        .map(|origin| (origin.to_lowercase(), SigningPolicy::default()))
        .collect();
    for zone in &config.zones {
        if let Some(policy) = &zone.dnssec {
            policies.insert(zone.origin.to_lowercase(), policy.clone());
        }
    }
    policies
}

/// The key directory: `--key-dir`, or `keys` in the state directory.
pub fn key_dir(args: &RunArgs) -> PathBuf {
    args.key_dir
        .clone()
        .unwrap_or_else(|| args.state_dir.join("keys"))
}

/// The signers a load calls for, with the key rings that change once the
/// load is applied.
#[derive(Default)]
pub struct Signing {
    signers: Signers,
    pending: Vec<(Arc<ZoneSigner>, KeyRing)>,
}

impl Signing {
    /// Puts the new key rings in use; the signers to serve with.
    pub fn install(self) -> Signers {
        for (signer, ring) in self.pending {
            signer.install(ring);
        }
        self.signers
    }

    /// Makes `zone` one dnslb signs by `policy`: its signer is `previous`'s
    /// if it signed it the same way (its signature cache stays), with the
    /// key directory read again; otherwise a new one.
    pub fn add(
        &mut self,
        args: &RunArgs,
        zone: &mut Zone,
        file: &std::path::Path,
        policy: &SigningPolicy,
        previous: &Signers,
    ) -> Result<(), FileError> {
        if zone.is_presigned() {
            return Err(FileError::new(
                file,
                "the zone holds DNSSEC records (it was signed elsewhere), and dnssec = \"online\" signs it: serve the unsigned zone to sign it, or drop dnssec to serve it as signed",
            ));
        }
        let dir = key_dir(args);
        let origin = zone.origin().clone();
        let now = now();
        let signer = match previous.get(&origin) {
            Some(signer) if signer.policy() == policy && signer.key_dir() == dir => {
                if let Some(ring) = signer.reread(now)? {
                    self.pending.push((signer.clone(), ring));
                }
                signer.clone()
            }
            _ => Arc::new(ZoneSigner::open(
                zone.origin_name(),
                policy.clone(),
                &dir,
                owner(args),
                now,
            )?),
        };
        zone.sign_online();
        self.signers.insert(origin, signer);
        Ok(())
    }
}

/// The user key files are given to: `--user`'s, when the daemon runs as
/// one.
fn owner(args: &RunArgs) -> Option<(nix::unistd::Uid, nix::unistd::Gid)> {
    let target = Target::lookup(args.user.as_deref()?).ok()?;
    Some((target.uid(), target.gid()))
}

/// `--sign` origins that name no zone served: a problem each.
pub fn unserved(args: &RunArgs, served: &[WireName]) -> Vec<FileError> {
    args.sign
        .iter()
        .filter(|origin| WireName::from_name(origin).is_none_or(|wire| !served.contains(&wire)))
        .map(|origin| FileError::new("--sign", format!("{origin} is not a zone being served")))
        .collect()
}

/// What `dnslb dnssec status` shows of a zone dnslb signs.
pub fn online_status(origin: &Name, signer: &ZoneSigner, now: u64) -> DnssecZone {
    use hickory_proto::dnssec::{DigestType, Verifier};
    let status = signer.status(now);
    let keys = status
        .keys
        .iter()
        .filter(|key| key.state != crate::signer::KeyState::Removed)
        .map(|key| {
            let dnskey = &key.key.dnskey;
            let ds = dnskey
                .to_digest(origin, DigestType::SHA256)
                .ok()
                .map(|digest| {
                    hickory_proto::dnssec::rdata::DS::new(
                        key.key.tag,
                        dnskey.algorithm(),
                        DigestType::SHA256,
                        digest.as_ref().to_vec(),
                    )
                    .to_string()
                });
            DnssecKey {
                tag: key.key.tag,
                algorithm: key.key.algorithm.number(),
                algorithm_name: key.key.algorithm.mnemonic().to_owned(),
                role: match (key.key.key_signing(), signer.policy().split) {
                    (true, false) => "csk",
                    (true, true) => "ksk",
                    (false, _) => "zsk",
                }
                .to_owned(),
                ds: key.key.key_signing().then_some(ds).flatten(),
                state: Some(key.state),
                next_event: key.next_event,
                cds_published: key.cds_published,
            }
        })
        .collect();
    DnssecZone {
        origin: origin.to_string(),
        mode: "online".to_owned(),
        keys,
        signatures: status.cache.entries,
        first_expiration: None,
        signer: Some(SignerInfo {
            next_key_event: status.next_event,
            cache_entries: status.cache.entries,
            cache_bytes: status.cache.bytes,
            cache_hits: status.cache.hits,
            cache_misses: status.cache.misses,
            signatures_made: status.signatures_made,
            signing_failures: status.failures,
            validity: status.validity.as_secs(),
        }),
    }
}

/// Names whose kernel signatures are written again in one tick, at most:
/// the maps are held meanwhile (a health verdict waits for them), so a
/// large zone, whose names all come due together, is renewed over many
/// ticks, well within the quarter of the validity left before the kernel
/// stops sending them.
const RENEWALS_PER_TICK: usize = 20_000;

/// How far the wall clock may move against the kernel's between two ticks
/// before the kernel's signature deadlines are written again.
const CLOCK_SLACK_NS: u64 = 1_000_000_000;

/// What keeps the kernel's signatures fresh: the maps, and the steering
/// that writes the services into them.
pub struct KernelSignatures {
    dataplane: SharedDataplane,
    steering: Arc<Steering>,
    signed_with: std::sync::Mutex<SignedWith>,
}

/// The keys each zone was last signed with, and the kernel's clock against
/// the wall clock then, to tell when either changes.
struct SignedWith {
    tags: HashMap<WireName, [Vec<u16>; 2]>,
    clock: KernelClock,
}

impl KernelSignatures {
    pub fn new(dataplane: SharedDataplane, steering: Arc<Steering>) -> KernelSignatures {
        KernelSignatures {
            dataplane,
            steering,
            signed_with: std::sync::Mutex::new(SignedWith {
                tags: HashMap::new(),
                clock: KernelClock::now(),
            }),
        }
    }

    /// Writes again, with new signatures, the zones' entries and the
    /// services whose signatures in the kernel are due at `now`: all of
    /// them when the keys signing a zone changed, so that the kernel never
    /// relies on a key after it leaves, and when the kernel's clock and the
    /// wall clock drifted apart (a suspend, a step of the clock), so that
    /// its deadlines are the signatures' again.
    fn renew(&self, responder: &Responder, now: u64) -> anyhow::Result<()> {
        let signers = responder.signers();
        let keys: HashMap<WireName, [Vec<u16>; 2]> = signers
            .iter()
            .map(|(origin, signer)| (origin.clone(), signer.signing_tags(now)))
            .collect();
        let clock = KernelClock::now();
        let keys_changed = {
            let mut signed_with = self
                .signed_with
                .lock()
                .map_err(|_| anyhow::anyhow!("the kernel signing state is poisoned"))?;
            let changed = signed_with.tags.iter().any(|(origin, tags)| {
                keys.get(origin)
                    .is_some_and(|now_signing| now_signing != tags)
            });
            let drifted = clock.drifted_from(&signed_with.clock, CLOCK_SLACK_NS);
            if drifted {
                tracing::warn!(
                    "the wall clock moved against the kernel's: its signatures are written again"
                );
            }
            *signed_with = SignedWith { tags: keys, clock };
            changed || drifted
        };
        {
            let mut dataplane = self.dataplane.lock()?;
            if keys_changed {
                dataplane.renew_all_signatures();
            }
            if !dataplane.signatures_due(now) {
                return Ok(());
            }
        }
        // The steering's lock before the dataplane's.
        let steered = self.steering.steered_names()?;
        let renewed = renew_signatures(
            &mut *self.dataplane.lock()?,
            &responder.catalog(),
            &|name, hot_type| steered.contains(&(WireName::from(name), hot_type)),
            (&|origin| super::online_signer(&signers, origin), now),
            RENEWALS_PER_TICK,
        )?;
        if renewed > 0 {
            tracing::debug!("{renewed} signed names written into the kernel again");
        }
        self.steering.renew_signatures(now, keys_changed)
    }
}

/// Every second: each signer's planned key events, the signatures due to
/// be made again (in the kernel too), and the signed copies secondaries
/// transfer, made anew when stale, announced by NOTIFY and their serials
/// kept in the state directory (in a blocking thread: a sweep may sign
/// thousands).
pub async fn keep_signing(
    responder: Arc<Responder>,
    kernel: Option<KernelSignatures>,
    kept: Kept,
) -> std::io::Result<()> {
    let kernel = kernel.map(Arc::new);
    match kept.copy_serials() {
        Ok(serials) => responder.set_copy_serials(
            serials
                .iter()
                .filter_map(|(origin, serial)| Some((WireName::from_name(origin)?, *serial)))
                .collect(),
        ),
        Err(error) => tracing::error!("{error}; signed copies are numbered from the zone files"),
    }
    let mut written = responder.copy_serials();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let signers = responder.signers();
        if signers.is_empty() {
            continue;
        }
        let sweeping = responder.clone();
        let kernel = kernel.clone();
        let swept = tokio::task::spawn_blocking(move || {
            let now = now();
            for (origin, signer) in signers.iter() {
                if let Err(error) = signer.maintain(now) {
                    tracing::error!("zone {}: {error}", origin.to_name());
                }
            }
            if let Some(kernel) = &kernel
                && let Err(error) = kernel.renew(&sweeping, now)
            {
                tracing::error!("renewing the kernel's signatures: {error:#}");
            }
            sweeping.renew_signed_copies(now)
        });
        let renewed = match swept.await {
            Ok(renewed) => renewed,
            Err(error) => {
                tracing::error!("renewing signatures: {error}");
                continue;
            }
        };
        let serials = responder.copy_serials();
        if serials != written {
            let by_name = serials
                .iter()
                .map(|(apex, serial)| (apex.to_name(), *serial))
                .collect();
            match kept.keep_copy_serials(&by_name) {
                Ok(()) => written = serials,
                Err(error) => tracing::error!("{error}"),
            }
        }
        let rules = responder.transfer_rules();
        for (origin, serial) in renewed {
            if let Some(rule) = WireName::from_name(&origin).and_then(|apex| rules.get(&apex)) {
                notify_version(&origin, serial, rule, responder.transfer_counts());
            }
        }
    }
}
