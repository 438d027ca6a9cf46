//! A zone's keys over time: which are published and which sign at a
//! moment, and the rolls that keep them fresh. A zone-signing key rolls by
//! pre-publication (RFC 6781 §4.1.1.1, RFC 7583 §3.2): its successor is in
//! the DNSKEY RRset for the DNSKEY TTL and a propagation delay before it
//! signs, and the old key stays published until the signatures it made
//! have expired from every cache.

use std::sync::Arc;

use hickory_proto::{
    dnssec::SigningKey,
    rr::{Name, RecordType},
};

use super::{
    SigningPolicy,
    keyfile::{KeyProblem, Timing, ZoneKey},
};

/// A key with its signer ready.
#[derive(Clone)]
pub struct RingKey {
    pub key: ZoneKey,
    pub signer: Arc<dyn SigningKey>,
}

/// Where a key is in its life at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Made, not yet in the DNSKEY RRset.
    Created,
    /// In the DNSKEY RRset, not yet signing.
    Published,
    /// Signing.
    Active,
    /// No longer signing, still published while its signatures live.
    Retired,
    /// Out of the DNSKEY RRset.
    Removed,
}

fn reached(event: Option<u64>, now: u64) -> bool {
    event.is_some_and(|at| at <= now)
}

pub fn state(timing: &Timing, now: u64) -> KeyState {
    if reached(timing.delete, now) {
        KeyState::Removed
    } else if reached(timing.inactive, now) {
        KeyState::Retired
    } else if reached(timing.activate, now) {
        KeyState::Active
    } else if reached(timing.publish, now) {
        KeyState::Published
    } else {
        KeyState::Created
    }
}

/// Whether the key's CDS and CDNSKEY are published at `now`.
pub fn syncing(timing: &Timing, now: u64) -> bool {
    reached(timing.sync_publish, now) && !reached(timing.sync_delete, now)
}

/// The next planned event of a key after `now`.
pub fn next_event(timing: &Timing, now: u64) -> Option<u64> {
    [
        timing.publish,
        timing.activate,
        timing.inactive,
        timing.delete,
        timing.sync_publish,
        timing.sync_delete,
    ]
    .into_iter()
    .flatten()
    .filter(|at| *at > now)
    .min()
}

/// A zone's keys, as one immutable set: a change makes a new ring.
#[derive(Clone)]
pub struct KeyRing {
    pub keys: Vec<RingKey>,
}

impl KeyRing {
    /// The ring of `keys`; a key whose signer cannot be made is given
    /// back by its file name, with the problem.
    pub fn new(keys: Vec<ZoneKey>) -> Result<KeyRing, (String, KeyProblem)> {
        // In the order of their files' names, as every node sharing them
        // reads them: the same RRsets, byte for byte, on each.
        let mut keys = keys;
        keys.sort_by_key(ZoneKey::file_stem);
        let keys = keys
            .into_iter()
            .map(|key| match key.signing_key() {
                Ok(signer) => Ok(RingKey {
                    signer: Arc::from(signer),
                    key,
                }),
                Err(problem) => Err((key.file_stem(), problem)),
            })
            .collect::<Result<_, _>>()?;
        Ok(KeyRing { keys })
    }

    /// The keys in the DNSKEY RRset at `now`.
    pub fn published(&self, now: u64) -> impl Iterator<Item = &RingKey> {
        self.keys.iter().filter(move |k| {
            matches!(
                state(&k.key.timing, now),
                KeyState::Published | KeyState::Active | KeyState::Retired
            )
        })
    }

    /// The keys whose CDS and CDNSKEY are published at `now`.
    pub fn syncing(&self, now: u64) -> impl Iterator<Item = &RingKey> {
        self.published(now)
            .filter(move |k| k.key.key_signing() && syncing(&k.key.timing, now))
    }

    /// The keys that sign an RRset of `record_type` at `now`: the
    /// key-signing keys sign the DNSKEY RRset and the CDS and CDNSKEY
    /// ones (RFC 7344 §4.1); zone-signing keys, or a combined key when
    /// there is none, sign the rest.
    /// (An iterator, in the ring's order: answering compares it with the
    /// keys a cached signature was made by, for every answer.)
    pub fn signing(&self, record_type: RecordType, now: u64) -> impl Iterator<Item = &RingKey> {
        let active = move || {
            self.keys
                .iter()
                .filter(move |k| state(&k.key.timing, now) == KeyState::Active)
        };
        let apex_keys = signed_by_ksk(record_type);
        let zone_signing = active().any(|k| !k.key.key_signing());
        active().filter(move |k| match apex_keys {
            true => k.key.key_signing(),
            false => !zone_signing || !k.key.key_signing(),
        })
    }

    /// The tags of the keys that sign the zone's data, then of those that
    /// sign its key RRsets, at `now`.
    pub fn signing_tags(&self, now: u64) -> [Vec<u16>; 2] {
        [RecordType::SOA, RecordType::DNSKEY]
            .map(|record_type| self.signing(record_type, now).map(|k| k.key.tag).collect())
    }

    /// The earliest planned event of any key after `now`.
    pub fn next_event(&self, now: u64) -> Option<u64> {
        self.keys
            .iter()
            .filter_map(|k| next_event(&k.key.timing, now))
            .min()
    }
}

/// Which key to roll.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Roll {
    Zsk,
    Ksk,
}

/// The keys a zone starts with: a combined key, or a KSK and a ZSK,
/// published and active at once (nothing of the zone is signed yet).
pub fn first_keys(
    zone: &Name,
    policy: &SigningPolicy,
    now: u64,
) -> Result<Vec<ZoneKey>, KeyProblem> {
    let kinds: &[bool] = match policy.split {
        true => &[true, false],
        false => &[true],
    };
    kinds
        .iter()
        .map(|&key_signing| {
            let mut key = ZoneKey::generate(zone, policy.algorithm, key_signing, now)?;
            key.timing.publish = Some(now);
            key.timing.activate = Some(now);
            Ok(key)
        })
        .collect()
}

/// How long before a key signs it must be published: the DNSKEY RRset's
/// TTL and the propagation delay (RFC 7583 §3.2.1, IpubC).
fn publish_safety(policy: &SigningPolicy) -> u64 {
    u64::from(policy.dnskey_ttl) + policy.propagation.as_secs()
}

/// How long a retired key stays published: until the last signature it
/// made has expired, which bounds its life in any cache, and the
/// propagation delay.
fn retire_safety(policy: &SigningPolicy) -> u64 {
    policy.validity.as_secs() + policy.propagation.as_secs()
}

/// Whether RRsets of `record_type` are signed by the key-signing keys:
/// the apex's DNSKEY, CDS and CDNSKEY (RFC 7344 §4.1).
pub fn signed_by_ksk(record_type: RecordType) -> bool {
    matches!(
        record_type,
        RecordType::DNSKEY | RecordType::CDS | RecordType::CDNSKEY
    )
}

/// The changes the policy calls for at `now`: a successor for a zone-
/// signing key that nears the end of its lifetime. Returns the keys that
/// changed or were made (to be written), or nothing.
pub fn plan(
    zone: &Name,
    keys: &[ZoneKey],
    policy: &SigningPolicy,
    now: u64,
) -> Result<Vec<ZoneKey>, KeyProblem> {
    if !policy.split {
        return Ok(Vec::new());
    }
    let lifetime = policy.zsk_lifetime.as_secs();
    let safety = publish_safety(policy);
    let current = keys.iter().find(|key| {
        !key.key_signing()
            && state(&key.timing, now) == KeyState::Active
            && key.timing.inactive.is_none()
    });
    let Some(current) = current else {
        return Ok(Vec::new());
    };
    let started = current.timing.activate.unwrap_or(current.timing.created);
    if now + safety < started + lifetime {
        return Ok(Vec::new());
    }
    roll_zsk(zone, current, policy, started + lifetime, now)
}

/// A successor for `current`, signing from `switch` (or once published
/// long enough), and `current` retired then.
fn roll_zsk(
    zone: &Name,
    current: &ZoneKey,
    policy: &SigningPolicy,
    switch: u64,
    now: u64,
) -> Result<Vec<ZoneKey>, KeyProblem> {
    let switch = switch.max(now + publish_safety(policy));
    let mut successor = ZoneKey::generate(zone, policy.algorithm, false, now)?;
    successor.timing.publish = Some(now);
    successor.timing.activate = Some(switch);
    let mut retiring = current.clone();
    retiring.timing.inactive = Some(switch);
    retiring.timing.delete = Some(switch + retire_safety(policy));
    Ok(vec![retiring, successor])
}

/// Starts a roll of `which` now, on the operator's word. A ZSK roll is the
/// pre-publication roll above, started early (with a combined key, the
/// combined key is rolled as a KSK). A KSK roll publishes and activates a
/// new key-signing key at once (both sign the DNSKEY RRset), and publishes
/// the new key's CDS and CDNSKEY for the parent (RFC 7344); the old key
/// retires once the parent's DS has had time to change, as
/// `policy.ds_wait` says.
pub fn roll(
    zone: &Name,
    keys: &[ZoneKey],
    policy: &SigningPolicy,
    which: Roll,
    now: u64,
) -> Result<Vec<ZoneKey>, RollError> {
    let active = |key_signing: bool| {
        keys.iter().find(|key| {
            key.key_signing() == key_signing
                && state(&key.timing, now) == KeyState::Active
                && key.timing.inactive.is_none()
        })
    };
    match (which, policy.split) {
        (Roll::Zsk, false) => Err(RollError::NoZsk),
        (Roll::Zsk, true) => {
            if keys
                .iter()
                .any(|key| !key.key_signing() && state(&key.timing, now) == KeyState::Published)
            {
                return Err(RollError::Rolling);
            }
            let current = active(false).ok_or(RollError::NoActive)?;
            roll_zsk(zone, current, policy, now, now).map_err(RollError::Key)
        }
        (Roll::Ksk, _) => {
            let retiring = |key: &&ZoneKey| {
                key.key_signing()
                    && key.timing.inactive.is_some()
                    && state(&key.timing, now) != KeyState::Removed
            };
            if keys.iter().any(|key| retiring(&key)) {
                return Err(RollError::Rolling);
            }
            let current = active(true).ok_or(RollError::NoActive)?;
            let mut successor =
                ZoneKey::generate(zone, policy.algorithm, true, now).map_err(RollError::Key)?;
            successor.timing.publish = Some(now);
            successor.timing.activate = Some(now);
            successor.timing.sync_publish = Some(now);
            let switch = now + policy.ds_wait.as_secs();
            successor.timing.sync_delete = Some(switch);
            let mut retiring = current.clone();
            retiring.timing.sync_delete = Some(now);
            retiring.timing.inactive = Some(switch);
            retiring.timing.delete = Some(switch + retire_safety(policy));
            Ok(vec![retiring, successor])
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RollError {
    #[error(
        "the zone signs with a combined key (CSK): roll it as a KSK, or set `keys = \"split\"`"
    )]
    NoZsk,
    #[error("a roll of that key is already under way")]
    Rolling,
    #[error("no active key of that kind to roll")]
    NoActive,
    #[error("making the new key: {0}")]
    Key(KeyProblem),
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn policy() -> SigningPolicy {
        SigningPolicy {
            split: true,
            zsk_lifetime: Duration::from_secs(1000),
            dnskey_ttl: 10,
            propagation: Duration::from_secs(5),
            validity: Duration::from_secs(100),
            ..SigningPolicy::default()
        }
    }

    fn zone() -> Name {
        Name::from_ascii("example.com.").unwrap()
    }

    #[test]
    fn a_zsk_is_succeeded_by_pre_publication_before_its_lifetime_ends() {
        let policy = policy();
        let mut keys = first_keys(&zone(), &policy, 0).unwrap();
        assert!(plan(&zone(), &keys, &policy, 900).unwrap().is_empty());
        // 1000 - (10 + 5): the successor must be published now.
        let changed = plan(&zone(), &keys, &policy, 985).unwrap();
        assert_eq!(changed.len(), 2);
        let (retiring, successor) = (&changed[0], &changed[1]);
        assert_eq!(retiring.timing.inactive, Some(1000));
        assert_eq!(retiring.timing.delete, Some(1105));
        assert_eq!(successor.timing.publish, Some(985));
        assert_eq!(successor.timing.activate, Some(1000));
        keys.retain(|key| key.tag != retiring.tag);
        keys.extend(changed.clone());
        let ring = KeyRing::new(keys.clone()).unwrap();
        let signs =
            |at| -> Vec<u16> { ring.signing(RecordType::A, at).map(|k| k.key.tag).collect() };
        let published = |at| ring.published(at).count();
        assert_eq!(signs(999), vec![retiring.tag]);
        assert_eq!(signs(1000), vec![successor.tag]);
        // KSK, old and new ZSK while the old one's signatures live.
        assert_eq!(published(1050), 3);
        assert_eq!(published(1105), 2);
        // No second successor while one is waiting.
        assert!(plan(&zone(), &keys, &policy, 990).unwrap().is_empty());
        // The DNSKEY RRset is signed by the KSK alone.
        let ksk: Vec<bool> = ring
            .signing(RecordType::DNSKEY, 1000)
            .map(|k| k.key.key_signing())
            .collect();
        assert_eq!(ksk, vec![true]);
    }

    #[test]
    fn a_ksk_roll_publishes_the_new_keys_cds_until_the_old_key_retires() {
        let policy = SigningPolicy {
            ds_wait: Duration::from_secs(50),
            ..SigningPolicy::default()
        };
        let keys = first_keys(&zone(), &policy, 0).unwrap();
        assert!(matches!(
            roll(&zone(), &keys, &policy, Roll::Zsk, 10),
            Err(RollError::NoZsk)
        ));
        let changed = roll(&zone(), &keys, &policy, Roll::Ksk, 10).unwrap();
        let ring = KeyRing::new(changed.clone()).unwrap();
        let syncing: Vec<u16> = ring.syncing(20).map(|k| k.key.tag).collect();
        assert_eq!(syncing, vec![changed[1].tag]);
        assert_eq!(ring.signing(RecordType::DNSKEY, 20).count(), 2);
        assert_eq!(ring.signing(RecordType::DNSKEY, 60).count(), 1);
        assert_eq!(ring.syncing(60).count(), 0);
    }
}
