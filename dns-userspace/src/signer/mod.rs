//! Online signing (`dnssec = "online"`): a zone's keys, kept in the key
//! directory as BIND's key files, sign each RRset as it is answered, the
//! sets routing policies make included; signatures are kept per RRset and
//! made again before they expire; keys roll by the policy's timing.
//!
//! Denial of existence is compact (RFC 9824): one NSEC at the name asked,
//! so nothing the zone holds is ever enumerated or denied by a span.

mod cache;
pub mod denial;
mod kernel;
pub mod keyfile;
pub mod keys;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use hickory_proto::{
    dnssec::{
        DigestType, PublicKey, TBS, Verifier,
        rdata::{CDNSKEY, CDS, DNSSECRData, RRSIG, SigInput},
    },
    rr::{DNSClass, Name, RData, Record, RecordType, SerialNumber, rdata::NULL},
    serialize::binary::BinEncodable,
};
use nix::unistd::{Gid, Uid};

pub use cache::{CacheStats, RrsetData};
use cache::{Key, SignatureCache, Signed};
use keyfile::{KeyAlgorithm, ZoneKey};
use keys::{KeyRing, RingKey};
pub use keys::{KeyState, Roll, RollError};

use crate::file_error::FileError;

/// How a zone is signed: `[zone.dnssec]` in the policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningPolicy {
    pub algorithm: KeyAlgorithm,
    /// A key-signing key and a zone-signing key, instead of one combined
    /// key (CSK).
    pub split: bool,
    /// How long a zone-signing key signs before its successor takes over.
    pub zsk_lifetime: Duration,
    /// How long a signature is valid from when it is made (its inception
    /// is an hour earlier, for clients whose clocks are behind).
    pub validity: Duration,
    /// The DNSKEY, CDS and CDNSKEY RRsets' TTL.
    pub dnskey_ttl: u32,
    /// How long a change takes to reach every secondary and cache beyond
    /// the TTLs (RFC 7583's propagation delay).
    pub propagation: Duration,
    /// After a KSK roll starts, how long until the parent is taken to have
    /// the new DS (the new key's CDS is published meanwhile) and the old
    /// KSK retires.
    pub ds_wait: Duration,
    /// Bounds of the signature cache.
    pub cache_entries: usize,
    pub cache_bytes: usize,
}

impl Default for SigningPolicy {
    fn default() -> SigningPolicy {
        SigningPolicy {
            algorithm: KeyAlgorithm::EcdsaP256Sha256,
            split: false,
            zsk_lifetime: Duration::from_secs(30 * 86_400),
            validity: Duration::from_secs(3 * 86_400),
            dnskey_ttl: 3600,
            propagation: Duration::from_secs(3600),
            ds_wait: Duration::from_secs(2 * 86_400),
            cache_entries: 200_000,
            cache_bytes: 128 << 20,
        }
    }
}

/// Signatures start an hour in the past: a validator whose clock is
/// behind still takes them.
const INCEPTION_SKEW: u64 = 3600;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

/// One zone's signer.
pub struct ZoneSigner {
    origin: Name,
    policy: SigningPolicy,
    key_dir: PathBuf,
    owner: Option<(Uid, Gid)>,
    ring: ArcSwap<KeyRing>,
    cache: SignatureCache,
    made: AtomicU64,
    failures: AtomicU64,
    /// Key changes (planned and asked for) one at a time in this process;
    /// the key directory's lock does it between processes.
    changing: Mutex<()>,
    /// The keys signing when the cache was last swept: when they change,
    /// every entry is looked at.
    swept_with: Mutex<[Vec<u16>; 2]>,
    /// When the key directory last changed, as last read: a change is
    /// another node's (sharing the directory) or the operator's.
    dir_changed: Mutex<Option<SystemTime>>,
    /// The last time seen by [`ZoneSigner::maintain`], to notice a clock
    /// that jumps.
    last_seen: AtomicU64,
}

/// What `dnslb dnssec status` shows of a signer.
#[derive(Clone, Debug)]
pub struct SignerStatus {
    pub keys: Vec<KeyStatus>,
    pub next_event: Option<u64>,
    pub cache: CacheStats,
    pub signatures_made: u64,
    pub failures: u64,
    pub validity: Duration,
}

#[derive(Clone, Debug)]
pub struct KeyStatus {
    pub key: ZoneKey,
    pub state: KeyState,
    pub next_event: Option<u64>,
    pub cds_published: bool,
}

impl ZoneSigner {
    /// The signer of `origin` with the keys in `key_dir`; a zone without
    /// keys gets its first ones, written there.
    pub fn open(
        origin: &Name,
        policy: SigningPolicy,
        key_dir: &Path,
        owner: Option<(Uid, Gid)>,
        now: u64,
    ) -> Result<ZoneSigner, FileError> {
        let ring = read_ring(origin, &policy, key_dir, owner, now)?;
        Ok(ZoneSigner {
            origin: origin.to_lowercase(),
            cache: SignatureCache::new(policy.cache_entries, policy.cache_bytes),
            policy,
            key_dir: key_dir.to_owned(),
            owner,
            ring: ArcSwap::from_pointee(ring),
            made: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            changing: Mutex::new(()),
            swept_with: Mutex::new([Vec::new(), Vec::new()]),
            dir_changed: Mutex::new(dir_changed(key_dir)),
            last_seen: AtomicU64::new(now),
        })
    }

    pub fn policy(&self) -> &SigningPolicy {
        &self.policy
    }

    pub fn key_dir(&self) -> &Path {
        &self.key_dir
    }

    /// Reads the key directory again (keys put there are imported): the
    /// new ring, not yet in use, or `None` when the keys are the same.
    pub fn reread(&self, now: u64) -> Result<Option<KeyRing>, FileError> {
        let current = self.ring.load();
        let ring = read_ring(&self.origin, &self.policy, &self.key_dir, self.owner, now)?;
        let same = ring.keys.len() == current.keys.len()
            && ring.keys.iter().zip(current.keys.iter()).all(|(a, b)| {
                a.key.tag == b.key.tag
                    && a.key.dnskey == b.key.dnskey
                    && a.key.timing == b.key.timing
            });
        Ok((!same).then_some(ring))
    }

    /// Puts a ring from [`ZoneSigner::reread`] in use.
    pub fn install(&self, ring: KeyRing) {
        self.ring.store(Arc::new(ring));
    }

    /// The RRSIGs of the RRset `rdatas` of `record_type` owned by `owner`
    /// (`owner_wire` its lowercase wire form) at `now`, from the cache
    /// when they are fresh enough. Never empty for a zone with an active key, unless signing
    /// failed (counted, and logged).
    pub fn sign(
        &self,
        owner: &Name,
        owner_wire: &[u8],
        record_type: RecordType,
        ttl: u32,
        rdatas: &[RData],
        now: u64,
    ) -> Arc<[RData]> {
        let fresh_for = self.policy.validity.as_secs() / 4;
        self.sign_lasting(
            owner,
            owner_wire,
            (record_type, ttl, rdatas),
            now,
            fresh_for,
        )
    }

    /// As [`ZoneSigner::sign`], taking cached RRSIGs only while they stay
    /// valid for `lasting` seconds more.
    fn sign_lasting(
        &self,
        owner: &Name,
        owner_wire: &[u8],
        (record_type, ttl, rdatas): (RecordType, u32, &[RData]),
        now: u64,
        lasting: u64,
    ) -> Arc<[RData]> {
        let ring = self.ring.load();
        let key = self.cache.key(owner_wire, record_type, ttl, rdatas);
        if let Some(rrsigs) = self.fresh(&ring, key, record_type, (now, now + lasting)) {
            return rrsigs;
        }
        let rrset = RrsetData {
            owner: owner.clone(),
            record_type,
            ttl,
            rdatas: rdatas.to_vec(),
        };
        let signed = self.make(&ring, &rrset, now);
        let rrsigs = signed.rrsigs.clone();
        if !rrsigs.is_empty() {
            self.cache.put(key, rrset, signed);
        }
        rrsigs
    }

    /// [`ZoneSigner::sign`]'s RRSIGs if the cache holds them fresh, else
    /// `None` (nothing is signed): for answers that have no owner name
    /// object at hand to sign with, and take the general path on a miss.
    pub fn cached(
        &self,
        owner_wire: &[u8],
        record_type: RecordType,
        ttl: u32,
        rdatas: &[RData],
        now: u64,
    ) -> Option<Arc<[RData]>> {
        let key = self.cache.key(owner_wire, record_type, ttl, rdatas);
        let fresh_until = now + self.policy.validity.as_secs() / 4;
        self.fresh(&self.ring.load(), key, record_type, (now, fresh_until))
    }

    /// The cached RRSIGs of `key` while they are valid past `fresh_until`
    /// and the keys of `ring` that sign `record_type` made them.
    fn fresh(
        &self,
        ring: &KeyRing,
        key: Key,
        record_type: RecordType,
        (now, fresh_until): (u64, u64),
    ) -> Option<Arc<[RData]>> {
        let usable = |signed: &Signed| {
            u64::from(signed.expiration) > fresh_until
                && signed
                    .keys
                    .iter()
                    .copied()
                    .eq(ring.signing(record_type, now).map(|k| k.key.tag))
        };
        self.cache.get(key, usable)
    }

    /// The RRSIGs of `rrset` made now with the keys in use, the cache
    /// neither asked nor filled: for a whole copy of the zone, which keeps
    /// its own.
    pub fn sign_anew(&self, rrset: &RrsetData, now: u64) -> Arc<[RData]> {
        self.make(&self.ring.load(), rrset, now).rrsigs
    }

    /// The tags of the keys that sign the zone's data, then of those that
    /// sign its DNSKEY RRset, at `now`: a copy signed by others is stale.
    pub fn signing_tags(&self, now: u64) -> [Vec<u16>; 2] {
        self.ring.load().signing_tags(now)
    }

    /// Signs `rrset` with each key of `ring` that signs its type. The
    /// RRSIGs are kept in their wire form (RFC 4034 §3.1: the signer's
    /// name is never compressed), which answers copy as they are instead
    /// of encoding each field again.
    fn make(&self, ring: &KeyRing, rrset: &RrsetData, now: u64) -> Signed {
        let inception = now.saturating_sub(INCEPTION_SKEW);
        let expiration = now + self.policy.validity.as_secs();
        let records: Vec<Record> = rrset
            .rdatas
            .iter()
            .map(|rdata| Record::from_rdata(rrset.owner.clone(), rrset.ttl, rdata.clone()))
            .collect();
        let rrsigs: Vec<RData> = ring
            .signing(rrset.record_type, now)
            .filter_map(|key| {
                match sign_one(&self.origin, key, rrset, &records, inception, expiration) {
                    Ok(rrsig) => {
                        self.made.fetch_add(1, Ordering::Relaxed);
                        wire_form(&rrsig)
                    }
                    Err(error) => {
                        self.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(
                            "zone {}: signing {} {} with key {}: {error}",
                            self.origin,
                            rrset.owner,
                            rrset.record_type,
                            key.key.tag
                        );
                        None
                    }
                }
            })
            .collect();
        Signed {
            rrsigs: Arc::from(rrsigs),
            expiration: expiration as u32,
            keys: ring
                .signing(rrset.record_type, now)
                .map(|k| k.key.tag)
                .collect(),
        }
    }

    /// The DNSKEY RRset's data at `now`.
    pub fn dnskeys(&self, now: u64) -> Vec<RData> {
        self.ring
            .load()
            .published(now)
            .map(|k| RData::DNSSEC(DNSSECRData::DNSKEY(k.key.dnskey.clone())))
            .collect()
    }

    /// The CDS RRset's data at `now` (empty outside a KSK roll): SHA-256
    /// digests of the keys the parent should have a DS for.
    pub fn cds(&self, now: u64) -> Vec<RData> {
        self.ring
            .load()
            .syncing(now)
            .filter_map(|k| {
                let digest = k
                    .key
                    .dnskey
                    .to_digest(&self.origin, DigestType::SHA256)
                    .ok()?;
                Some(RData::DNSSEC(DNSSECRData::CDS(CDS::new(
                    k.key.tag,
                    Some(k.key.dnskey.algorithm()),
                    DigestType::SHA256,
                    digest.as_ref().to_vec(),
                ))))
            })
            .collect()
    }

    /// The CDNSKEY RRset's data at `now`.
    pub fn cdnskeys(&self, now: u64) -> Vec<RData> {
        self.ring
            .load()
            .syncing(now)
            .map(|k| {
                RData::DNSSEC(DNSSECRData::CDNSKEY(CDNSKEY::with_flags(
                    k.key.dnskey.flags(),
                    Some(k.key.dnskey.algorithm()),
                    k.key.dnskey.public_key().public_bytes().to_vec(),
                )))
            })
            .collect()
    }

    /// The apex's key RRsets of `record_type` (DNSKEY, CDS, CDNSKEY);
    /// `None` for other types.
    pub fn apex_keys(&self, record_type: RecordType, now: u64) -> Option<Vec<RData>> {
        match record_type {
            RecordType::DNSKEY => Some(self.dnskeys(now)),
            RecordType::CDS => Some(self.cds(now)),
            RecordType::CDNSKEY => Some(self.cdnskeys(now)),
            _ => None,
        }
    }

    /// The key RRsets the apex has at `now`.
    pub fn apex_types(&self, now: u64) -> Vec<RecordType> {
        let syncing = self.ring.load().syncing(now).next().is_some();
        let mut types = vec![RecordType::DNSKEY];
        if syncing {
            types.extend([RecordType::CDS, RecordType::CDNSKEY]);
        }
        types
    }

    /// What the clock calls for: the keys' planned rolls, and signatures
    /// made again that near the end of their freshness (a bounded number
    /// per call). Returns how many were made again.
    pub fn maintain(&self, now: u64) -> Result<usize, FileError> {
        let last = self.last_seen.swap(now, Ordering::Relaxed);
        if now + 60 < last || now > last + 3600 {
            tracing::warn!(
                "zone {}: the clock jumped from {last} to {now}; signatures are made for the new time",
                self.origin
            );
        }
        self.follow_dir(now)?;
        // A roll is decided once for every node sharing the key directory:
        // under its lock, after reading what the others wrote.
        if !keys::plan(&self.origin, &self.key_list(), &self.policy, now)
            .map_err(|problem| FileError::new(&self.key_dir, problem))?
            .is_empty()
        {
            let _changing = self.changing.lock();
            let _locked = lock_dir(&self.key_dir, self.owner)?;
            self.read_dir(now)?;
            let changed = keys::plan(&self.origin, &self.key_list(), &self.policy, now)
                .map_err(|problem| FileError::new(&self.key_dir, problem))?;
            if !changed.is_empty() {
                tracing::info!("zone {}: rolling its zone-signing key", self.origin);
                self.apply_keys(changed)?;
            }
        }
        Ok(self.refresh(now))
    }

    /// Signs again the cached RRsets whose signatures are half way through
    /// their validity, or were made by keys that no longer sign them.
    fn refresh(&self, now: u64) -> usize {
        const PER_CALL: usize = 20_000;
        let ring = self.ring.load();
        let due_by = now + self.policy.validity.as_secs() / 2;
        // Worked out once for the sweep, not for each RRset under the
        // cache's locks.
        let tags = ring.signing_tags(now);
        // Nothing to look for, and no entry to visit under the locks the
        // answers take: the same keys sign, and none is due yet.
        let same_keys = self.swept_with.lock().is_ok_and(|swept| *swept == tags);
        if same_keys && u64::from(self.cache.first_expiration()) > due_by {
            return 0;
        }
        if let Ok(mut swept) = self.swept_with.lock() {
            swept.clone_from(&tags);
        }
        let [data_keys, key_keys] = tags;
        let due = self.cache.due(
            |rrset, signed| {
                let keys = match keys::signed_by_ksk(rrset.record_type) {
                    true => &key_keys,
                    false => &data_keys,
                };
                u64::from(signed.expiration) <= due_by || signed.keys.as_slice() != keys.as_slice()
            },
            PER_CALL,
        );
        let count = due.len();
        for (key, rrset) in due {
            let signed = self.make(&ring, &rrset, now);
            if !signed.rrsigs.is_empty() {
                self.cache.refresh(key, signed);
            }
        }
        count
    }

    /// Starts a roll of `which` on the operator's word.
    pub fn roll(&self, which: Roll, now: u64) -> Result<(), SignerError> {
        let _changing = self.changing.lock();
        let _locked = lock_dir(&self.key_dir, self.owner).map_err(SignerError::File)?;
        self.read_dir(now).map_err(SignerError::File)?;
        let keys = self.key_list();
        let changed =
            keys::roll(&self.origin, &keys, &self.policy, which, now).map_err(SignerError::Roll)?;
        self.apply_keys(changed).map_err(SignerError::File)
    }

    /// Reads the key directory again if it changed since it was last
    /// read, and signs with what it holds.
    fn follow_dir(&self, now: u64) -> Result<(), FileError> {
        let changed = dir_changed(&self.key_dir);
        let seen = self
            .dir_changed
            .lock()
            .map(|seen| *seen)
            .unwrap_or_default();
        if changed == seen {
            return Ok(());
        }
        self.read_dir(now)
    }

    /// Reads the key directory and signs with what it holds.
    fn read_dir(&self, now: u64) -> Result<(), FileError> {
        let changed = dir_changed(&self.key_dir);
        if let Ok(mut seen) = self.dir_changed.lock() {
            *seen = changed;
        }
        if let Some(ring) = self.reread(now)? {
            tracing::info!(
                "zone {}: the keys in {} changed; signing with them",
                self.origin,
                self.key_dir.display()
            );
            self.install(ring);
        }
        Ok(())
    }

    fn key_list(&self) -> Vec<ZoneKey> {
        self.ring
            .load()
            .keys
            .iter()
            .map(|k| k.key.clone())
            .collect()
    }

    /// Writes `changed` keys and puts the ring with them in use.
    fn apply_keys(&self, changed: Vec<ZoneKey>) -> Result<(), FileError> {
        for key in &changed {
            key.write(&self.key_dir, self.owner)?;
        }
        let current = self.ring.load();
        let mut keys: Vec<ZoneKey> = current
            .keys
            .iter()
            .map(|k| k.key.clone())
            .filter(|key| !changed.iter().any(|c| c.tag == key.tag))
            .collect();
        keys.extend(changed);
        let ring = KeyRing::new(keys).map_err(|(key, problem)| {
            FileError::new(self.key_dir.join(format!("{key}.private")), problem)
        })?;
        self.ring.store(Arc::new(ring));
        Ok(())
    }

    pub fn status(&self, now: u64) -> SignerStatus {
        let ring = self.ring.load();
        SignerStatus {
            keys: ring
                .keys
                .iter()
                .map(|k| KeyStatus {
                    key: k.key.clone(),
                    state: keys::state(&k.key.timing, now),
                    next_event: keys::next_event(&k.key.timing, now),
                    cds_published: k.key.key_signing() && keys::syncing(&k.key.timing, now),
                })
                .collect(),
            next_event: ring.next_event(now),
            cache: self.cache.stats(),
            signatures_made: self.made.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            validity: self.policy.validity,
        }
    }
}

/// `rrsig` as the bytes it is sent as.
fn wire_form(rrsig: &RData) -> Option<RData> {
    Some(RData::Unknown {
        code: RecordType::RRSIG,
        rdata: NULL::with(rrsig.to_bytes().ok()?),
    })
}

/// One RRSIG of `rrset` by `key`.
fn sign_one(
    origin: &Name,
    key: &RingKey,
    rrset: &RrsetData,
    records: &[Record],
    inception: u64,
    expiration: u64,
) -> Result<RData, hickory_proto::dnssec::DnsSecError> {
    let input = SigInput {
        type_covered: rrset.record_type,
        algorithm: key.key.algorithm.dnssec(),
        num_labels: rrset.owner.num_labels(),
        original_ttl: rrset.ttl,
        sig_expiration: SerialNumber::new(expiration as u32),
        sig_inception: SerialNumber::new(inception as u32),
        key_tag: key.key.tag,
        signer_name: origin.clone(),
    };
    let tbs = TBS::from_input(&rrset.owner, DNSClass::IN, &input, records.iter())?;
    let signature = key.signer.sign(&tbs)?;
    Ok(RData::DNSSEC(DNSSECRData::RRSIG(RRSIG::from_sig(
        input, signature,
    ))))
}

/// The keys of `origin` in `key_dir`, the first ones made if there are
/// none.
fn read_ring(
    origin: &Name,
    policy: &SigningPolicy,
    key_dir: &Path,
    owner: Option<(Uid, Gid)>,
    now: u64,
) -> Result<KeyRing, FileError> {
    let mut keys = keyfile::read_keys(key_dir, origin)?;
    if keys.is_empty() {
        make_dir(key_dir, owner)?;
        // Another node sharing the directory may be making them too: the
        // first under the lock does, the others read them.
        let _locked = lock_dir(key_dir, owner)?;
        keys = keyfile::read_keys(key_dir, origin)?;
    }
    if keys.is_empty() {
        keys = keys::first_keys(origin, policy, now)
            .map_err(|problem| FileError::new(key_dir, problem))?;
        for key in &keys {
            key.write(key_dir, owner)?;
        }
        tracing::info!(
            "zone {origin}: made its first keys in {} ({})",
            key_dir.display(),
            keys.iter()
                .map(|k| k.file_stem())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    KeyRing::new(keys)
        .map_err(|(key, problem)| FileError::new(key_dir.join(format!("{key}.private")), problem))
}

/// When `dir` last changed (a key file written or removed in it).
fn dir_changed(dir: &Path) -> Option<SystemTime> {
    std::fs::metadata(dir).and_then(|meta| meta.modified()).ok()
}

/// The lock on a key directory, held while keys change: `flock` on
/// `.dnslb-keys.lock` in it (made the first time, the daemon's user's),
/// which NFS carries between hosts as a POSIX lock.
fn lock_dir(
    dir: &Path,
    owner: Option<(Uid, Gid)>,
) -> Result<nix::fcntl::Flock<std::fs::File>, FileError> {
    let path = dir.join(".dnslb-keys.lock");
    let problem = |error: std::io::Error| FileError::new(&path, keyfile::KeyProblem::Write(error));
    // Read-only: a lock needs no more, whoever made the file.
    let file = match std::fs::File::open(&path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(problem)?;
            if let Some((uid, gid)) = owner {
                nix::unistd::chown(&path, Some(uid), Some(gid))
                    .map_err(|errno| problem(errno.into()))?;
            }
            file
        }
        opened => opened.map_err(problem)?,
    };
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| problem(errno.into()))
}

/// The key directory, mode 0700, the daemon's user's.
fn make_dir(dir: &Path, owner: Option<(Uid, Gid)>) -> Result<(), FileError> {
    use std::os::unix::fs::DirBuilderExt;
    let made = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| match owner {
            Some((uid, gid)) => nix::unistd::chown(dir, Some(uid), Some(gid)).map_err(Into::into),
            None => Ok(()),
        });
    made.map_err(|error| FileError::new(dir, keyfile::KeyProblem::Write(error)))
}

#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error(transparent)]
    Roll(RollError),
    #[error(transparent)]
    File(FileError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        std::env::temp_dir().join(format!(
            "dnslb-shared-keys-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ))
    }

    fn private_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|entry| {
                entry
                    .as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "private"))
            })
            .count()
    }

    /// The sweep makes signatures again once they are half way through
    /// their validity, and not before.
    #[test]
    fn the_sweep_signs_again_at_half_validity() {
        let dir = scratch();
        let origin = Name::from_ascii("example.com.").unwrap();
        let start = now();
        let signer =
            ZoneSigner::open(&origin, SigningPolicy::default(), &dir, None, start).unwrap();
        let owner = Name::from_ascii("www.example.com.").unwrap();
        let wire = crate::zone::WireName::from_name(&owner).unwrap();
        let rdatas = [RData::A(std::net::Ipv4Addr::new(198, 18, 0, 1).into())];
        let first = signer.sign(&owner, wire.as_bytes(), RecordType::A, 60, &rdatas, start);
        assert_eq!(first.len(), 1);
        assert_eq!(signer.maintain(start + 1).unwrap(), 0);
        let half = SigningPolicy::default().validity.as_secs() / 2;
        assert_eq!(signer.maintain(start + 1).unwrap(), 0, "nothing due");
        assert_eq!(signer.maintain(start + half).unwrap(), 1, "due");
        assert_eq!(signer.maintain(start + half + 1).unwrap(), 0, "renewed");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Two nodes sharing a key directory: the second takes the first's
    /// keys; a roll either decides (planned or asked for) is made once,
    /// and the other signs with it.
    #[test]
    fn nodes_sharing_a_key_directory_decide_each_roll_once_and_follow_it() {
        let dir = scratch();
        let origin = Name::from_ascii("example.com.").unwrap();
        let policy = SigningPolicy {
            split: true,
            zsk_lifetime: Duration::from_secs(86_400),
            ..SigningPolicy::default()
        };
        let start = now();
        let one = ZoneSigner::open(&origin, policy.clone(), &dir, None, start).unwrap();
        let two = ZoneSigner::open(&origin, policy, &dir, None, start).unwrap();
        assert_eq!(private_files(&dir), 2, "a KSK and a ZSK, made once");
        assert_eq!(one.dnskeys(start), two.dnskeys(start));

        // The ZSK is due: both plan, the first to take the lock decides.
        let due = start + 86_400;
        one.maintain(due).unwrap();
        two.maintain(due).unwrap();
        assert_eq!(private_files(&dir), 3, "one successor");
        assert_eq!(one.dnskeys(due).len(), 3);
        assert_eq!(one.dnskeys(due), two.dnskeys(due));
        assert_eq!(one.signing_tags(due), two.signing_tags(due));

        // A KSK roll asked of one node: the other follows.
        two.roll(Roll::Ksk, due).unwrap();
        assert_eq!(private_files(&dir), 4);
        one.maintain(due).unwrap();
        assert_eq!(one.dnskeys(due), two.dnskeys(due));
        assert_eq!(one.cds(due), two.cds(due));
        assert_eq!(one.cds(due).len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}
