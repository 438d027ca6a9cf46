//! Signed answers in the kernel, seen from userspace: the RRsets a hot
//! value can answer with (its variants), their RRSIG records from whoever
//! signs the zone, and the signature maps they are written into.
//!
//! A value's signatures go in under a set number no value had before,
//! then the value naming that set replaces the old one, and only then do
//! the old set's signatures go: a frame sees an old value with its own
//! signatures or a new one with its own (`dns_common::signatures`).

use std::{
    collections::{HashMap as StdHashMap, HashSet},
    net::IpAddr,
    time::{SystemTime, UNIX_EPOCH},
};

use aya::maps::{HashMap, MapData, MapError};
use dns_common::{
    HotName, MAX_ENDPOINTS, Selection,
    signatures::{SIG_CLASSES, SigKey, SigValue, sig_class},
};
use nix::time::{ClockId, clock_gettime};

use super::{HotType, HotValue};

/// Signs the RRsets the kernel answers DO queries with.
pub trait RrsetSigner {
    /// The RRSIG records of `owner`'s RRset of `hot_type` with `addrs` (in
    /// any order) and `ttl`, or `None` when there are none to send.
    fn rrsigs(
        &self,
        owner: &HotName,
        hot_type: HotType,
        ttl: u32,
        addrs: &[IpAddr],
    ) -> Option<Rrsigs>;
}

/// One RRset's RRSIG records, as the daemon appends them to its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rrsigs {
    /// Whole records, each owned by a pointer to the question name.
    pub wire: Vec<u8>,
    pub records: u16,
    /// Unix time from which the kernel must not send them (the daemon
    /// answers with new ones by then).
    pub until: u64,
    /// Unix time at which they are to be written again, with new ones.
    pub renew_at: u64,
}

impl Rrsigs {
    /// The records of `rdatas` (RRSIG data in wire form) with `ttl`;
    /// `until` and `renew_at` worked out from their earliest expiration.
    pub fn encode<'a>(
        rdatas: impl IntoIterator<Item = &'a [u8]>,
        ttl: u32,
        times: impl Fn(u64) -> (u64, u64),
    ) -> Option<Rrsigs> {
        let mut wire = Vec::new();
        let mut records = 0u16;
        let mut earliest = u64::MAX;
        for rdata in rdatas {
            crate::zone::wire::append_rrsig_record(&mut wire, ttl, rdata)?;
            earliest = earliest.min(u64::from(rrsig_expiration(rdata)?));
            records += 1;
        }
        if records == 0 {
            return None;
        }
        let (until, renew_at) = times(earliest);
        Some(Rrsigs {
            wire,
            records,
            until,
            renew_at,
        })
    }
}

/// An RRSIG's expiration (RFC 4034 §3.1.5), from its data.
fn rrsig_expiration(rdata: &[u8]) -> Option<u32> {
    let bytes = rdata.get(8..12)?;
    Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Every RRset a hot value answers with, signed: one per variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotSignatures {
    /// `dns_common::HotSet::variant_mask`.
    pub variant_mask: u8,
    pub variants: Vec<Rrsigs>,
}

impl HotSignatures {
    /// The signatures of every RRset `value` for `name` can answer with:
    /// each endpoint a weighted pick draws, each window a partial rotation
    /// starts, or the one set a full rotation reorders. `None` when the
    /// kernel does not answer from `value`, or any variant has none (its
    /// DO queries then go to the daemon).
    pub fn sign(name: &HotName, value: &HotValue, signer: &dyn RrsetSigner) -> Option<Self> {
        let (variant_mask, rrsets) = variants(value)?;
        let variants = rrsets
            .iter()
            .map(|addrs| signer.rrsigs(name, value.hot_type(), value.ttl(), addrs))
            .collect::<Option<Vec<_>>>()?;
        Some(HotSignatures {
            variant_mask,
            variants,
        })
    }

    /// The earliest time any variant is to be written again.
    pub fn renew_at(&self) -> u64 {
        self.variants.iter().map(|v| v.renew_at).min().unwrap_or(0)
    }

    /// The signature map class holding every variant, if one does.
    fn class(&self) -> Option<usize> {
        let longest = self.variants.iter().map(|v| v.wire.len()).max()?;
        sig_class(longest)
    }
}

/// The RRsets `value` answers with, by variant, and the variant mask: the
/// kernel's variant is the answer's first endpoint, masked.
fn variants(value: &HotValue) -> Option<(u8, Vec<Vec<IpAddr>>)> {
    let (selection, endpoints, answers) = value.shape();
    if endpoints == 0 || selection == Selection::ByClient as u8 {
        return None;
    }
    let addrs = value.addrs();
    let every_endpoint_starts_its_own = (MAX_ENDPOINTS - 1) as u8;
    if selection == Selection::Weighted as u8 {
        let each = addrs.iter().map(|addr| vec![*addr]).collect();
        return Some((every_endpoint_starts_its_own, each));
    }
    if answers >= endpoints {
        // Every rotation is the same RRset, in another order.
        return Some((0, vec![addrs]));
    }
    let windows = (0..endpoints)
        .map(|first| {
            (0..answers)
                .map(|i| addrs[(first + i) % endpoints])
                .collect()
        })
        .collect();
    Some((every_endpoint_starts_its_own, windows))
}

/// Whose signatures a set is: a name's value, or a client network's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum SigOwner {
    Name(HotType, u64),
    ClientNet(HotType, u32, [u8; 16], u8),
}

/// A set of signatures in the kernel.
#[derive(Clone, Copy, Debug)]
struct WrittenSet {
    set: u64,
    class: usize,
    variants: u32,
    renew_at: u64,
    /// A digest of the value the set was written for.
    value: u64,
}

/// A digest of a value as given to be written (its signature fields
/// aside): to tell when the same value is written again.
fn value_digest(value: &HotValue) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value
        .with_signatures(SigFields::default())
        .hash(&mut hasher);
    hasher.finish()
}

/// The signature maps, and which set each owner has in them.
pub(super) struct SigMaps {
    small: HashMap<MapData, SigKey, SigValue<{ SIG_CLASSES[0] }>>,
    large: HashMap<MapData, SigKey, SigValue<{ SIG_CLASSES[1] }>>,
    written: StdHashMap<SigOwner, WrittenSet>,
    /// The last set number handed out. It starts at the time of loading
    /// in nanoseconds, so a daemon that adopts pinned maps continues above
    /// every set its predecessor could have written.
    last_set: u64,
}

/// The fields of a value that name its signatures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigFields {
    pub set: u64,
    pub class: u8,
    pub variant_mask: u8,
}

impl SigMaps {
    pub(super) fn new(
        small: HashMap<MapData, SigKey, SigValue<{ SIG_CLASSES[0] }>>,
        large: HashMap<MapData, SigKey, SigValue<{ SIG_CLASSES[1] }>>,
    ) -> SigMaps {
        SigMaps {
            small,
            large,
            written: StdHashMap::new(),
            last_set: unix_ns(),
        }
    }

    /// Writes `signatures` under a new set; the fields its value carries.
    /// Signatures too long for every class are not written (`None`): the
    /// value then names none, and its DO queries go to the daemon.
    pub(super) fn write(
        &mut self,
        signatures: &HotSignatures,
        value: &HotValue,
    ) -> Result<Written, MapError> {
        let Some(class) = signatures.class() else {
            return Ok(None);
        };
        self.last_set += 1;
        let set = self.last_set;
        let clock = KernelClock::now();
        for (variant, rrsigs) in signatures.variants.iter().enumerate() {
            let key = SigKey::new(set, variant as u32);
            let until = clock.mono_ns(rrsigs.until);
            let written = match class {
                0 => put(&mut self.small, key, rrsigs, until),
                _ => put(&mut self.large, key, rrsigs, until),
            };
            if let Err(error) = written {
                self.remove_set(set, class, variant as u32);
                return Err(error);
            }
        }
        let fields = SigFields {
            set,
            class: class as u8,
            variant_mask: signatures.variant_mask,
        };
        let handle = WrittenSetHandle(WrittenSet {
            set,
            class,
            variants: signatures.variants.len() as u32,
            renew_at: signatures.renew_at(),
            value: value_digest(value),
        });
        Ok(Some((fields, handle)))
    }

    /// Makes `new` the owner's set (`None`: it has none) and removes the
    /// set it had: call once the owner's value names `new`.
    pub(super) fn replace(&mut self, owner: SigOwner, new: Option<WrittenSetHandle>) {
        let old = match new {
            Some(WrittenSetHandle(set)) => self.written.insert(owner, set),
            None => self.written.remove(&owner),
        };
        if let Some(old) = old {
            self.remove_set(old.set, old.class, old.variants);
        }
    }

    /// Takes back a set no value names (its value could not be written).
    pub(super) fn discard(&mut self, handle: WrittenSetHandle) {
        let WrittenSet {
            set,
            class,
            variants,
            ..
        } = handle.0;
        self.remove_set(set, class, variants);
    }

    fn remove_set(&mut self, set: u64, class: usize, variants: u32) {
        for variant in 0..variants {
            let key = SigKey::new(set, variant);
            // A set half written, or already gone: nothing to undo.
            let _ = match class {
                0 => self.small.remove(&key),
                _ => self.large.remove(&key),
            };
        }
    }

    /// Whether any owner's signatures are due to be written again at `now`.
    pub(super) fn any_due(&self, now: u64) -> bool {
        self.written.values().any(|set| set.renew_at <= now)
    }

    /// Makes every owner's signatures due now: the keys that sign changed.
    pub(super) fn all_due(&mut self) {
        for set in self.written.values_mut() {
            set.renew_at = 0;
        }
    }

    /// Whether `owner` has signatures for `value`, not due at `now`.
    pub(super) fn holds(&self, owner: SigOwner, value: &HotValue, now: u64) -> bool {
        self.written
            .get(&owner)
            .is_some_and(|set| set.renew_at > now && set.value == value_digest(value))
    }

    /// Whether `owner`'s signatures are due to be written again at `now`.
    pub(super) fn due(&self, owner: SigOwner, now: u64) -> bool {
        self.written
            .get(&owner)
            .is_some_and(|set| set.renew_at <= now)
    }

    /// Signed values in the kernel, and the signature map entries.
    pub(super) fn count(&self) -> (usize, u64) {
        let entries = self.written.values().map(|set| u64::from(set.variants));
        (self.written.len(), entries.sum())
    }

    /// Removes every set no owner has: what a previous daemon left in
    /// pinned maps. Returns how many entries went.
    pub(super) fn remove_unowned(&mut self) -> Result<usize, MapError> {
        let owned: HashSet<u64> = self.written.values().map(|set| set.set).collect();
        let small: Vec<SigKey> = self.small.keys().collect::<Result<_, _>>()?;
        let large: Vec<SigKey> = self.large.keys().collect::<Result<_, _>>()?;
        let mut removed = 0;
        for key in small.into_iter().filter(|key| !owned.contains(&key.set)) {
            let _ = self.small.remove(&key);
            removed += 1;
        }
        for key in large.into_iter().filter(|key| !owned.contains(&key.set)) {
            let _ = self.large.remove(&key);
            removed += 1;
        }
        Ok(removed)
    }
}

/// What [`SigMaps::write`] wrote: the fields naming the set and the set,
/// or nothing (signatures too long for every class).
pub type Written = Option<(SigFields, WrittenSetHandle)>;

/// A set written by [`SigMaps::write`], to be given to an owner
/// ([`SigMaps::replace`]) or taken back ([`SigMaps::discard`]).
#[must_use]
pub struct WrittenSetHandle(WrittenSet);

fn put<const L: usize>(
    map: &mut HashMap<MapData, SigKey, SigValue<L>>,
    key: SigKey,
    rrsigs: &Rrsigs,
    until_mono_ns: u64,
) -> Result<(), MapError> {
    let mut value = SigValue {
        until_mono_ns,
        len: rrsigs.wire.len() as u16,
        records: rrsigs.records,
        _pad: 0,
        bytes: [0; L],
    };
    value.bytes[..rrsigs.wire.len()].copy_from_slice(&rrsigs.wire);
    map.insert(key, value, 0)
}

/// The wall clock, in nanoseconds since the Unix epoch.
fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

/// The wall clock, in seconds since the Unix epoch, as signatures are
/// dated.
pub(super) fn unix_now() -> u64 {
    unix_ns() / 1_000_000_000
}

/// The kernel's clock for signatures (`CLOCK_MONOTONIC_COARSE`, which
/// `bpf_ktime_get_coarse_ns` reads) against the wall clock signatures are
/// dated by.
#[derive(Clone, Copy, Debug)]
pub struct KernelClock {
    mono_ns: u64,
    unix_ns: u64,
}

impl KernelClock {
    pub fn now() -> KernelClock {
        let mono_ns = clock_gettime(ClockId::CLOCK_MONOTONIC_COARSE)
            .map(|time| time.tv_sec() as u64 * 1_000_000_000 + time.tv_nsec() as u64)
            .unwrap_or(0);
        KernelClock {
            mono_ns,
            unix_ns: unix_ns(),
        }
    }

    /// Unix time `unix` (seconds) on the kernel's clock; a time already
    /// past is now, so the kernel sends nothing.
    fn mono_ns(&self, unix: u64) -> u64 {
        let ahead = unix
            .saturating_mul(1_000_000_000)
            .saturating_sub(self.unix_ns);
        self.mono_ns.saturating_add(ahead)
    }

    /// Whether the two clocks moved apart by more than `slack_ns` since
    /// `earlier`: the deadlines written then no longer hold.
    pub fn drifted_from(&self, earlier: &KernelClock, slack_ns: u64) -> bool {
        let offset = |clock: &KernelClock| i128::from(clock.unix_ns) - i128::from(clock.mono_ns);
        (offset(self) - offset(earlier)).unsigned_abs() > u128::from(slack_ns)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::dataplane::{Endpoint, HotAnswer};

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
    }

    #[test]
    fn variants_are_the_rrsets_the_kernel_can_send() {
        let rotate = |answers| {
            HotAnswer::RoundRobin {
                ttl: 60,
                addrs: (1..=3).map(ip).collect(),
            }
            .encode(HotType::A)
            .unwrap()
            .with_answers(answers)
        };
        assert_eq!(
            variants(&rotate(3)),
            Some((0, vec![vec![ip(1), ip(2), ip(3)]]))
        );
        assert_eq!(
            variants(&rotate(2)),
            Some((
                15,
                vec![vec![ip(1), ip(2)], vec![ip(2), ip(3)], vec![ip(3), ip(1)]]
            ))
        );
        let weighted = HotAnswer::Weighted {
            ttl: 60,
            endpoints: [(1, 3), (2, 1)]
                .map(|(last, weight)| Endpoint {
                    addr: ip(last),
                    weight,
                })
                .to_vec(),
        }
        .encode(HotType::A)
        .unwrap();
        assert_eq!(
            variants(&weighted),
            Some((15, vec![vec![ip(1)], vec![ip(2)]]))
        );
        assert_eq!(variants(&HotValue::to_userspace(HotType::A)), None);
        assert_eq!(variants(&HotValue::by_client(HotType::A, 7)), None);
    }

    #[test]
    fn records_carry_the_rrsig_data_and_its_earliest_expiration() {
        let rdata = |expiration: u32| {
            let mut data = vec![0, 1, 13, 2, 0, 0, 0, 60];
            data.extend(expiration.to_be_bytes());
            data.extend([0; 6]);
            data
        };
        let (early, late) = (rdata(1_000), rdata(2_000));
        let rrsigs = Rrsigs::encode([late.as_slice(), early.as_slice()], 60, |e| {
            (e - 10, e - 20)
        })
        .unwrap();
        assert_eq!(
            (rrsigs.records, rrsigs.until, rrsigs.renew_at),
            (2, 990, 980)
        );
        assert_eq!(rrsigs.wire.len(), 2 * (12 + 18));
        assert_eq!(
            &rrsigs.wire[..12],
            &[0xc0, 0x0c, 0, 46, 0, 1, 0, 0, 0, 60, 0, 18]
        );
        assert_eq!(Rrsigs::encode([], 60, |e| (e, e)), None);
        assert_eq!(Rrsigs::encode([&[0u8; 4][..]], 60, |e| (e, e)), None);
    }

    #[test]
    fn the_kernel_clock_places_wall_times_on_its_own() {
        let clock = KernelClock {
            mono_ns: 5_000_000_000,
            unix_ns: 1_000_500_000_000,
        };
        assert_eq!(clock.mono_ns(1_002), 6_500_000_000);
        assert_eq!(clock.mono_ns(999), 5_000_000_000, "past: now");
        let suspended = KernelClock {
            mono_ns: 6_000_000_000,
            unix_ns: 1_100_000_000_000,
        };
        assert!(suspended.drifted_from(&clock, 1_000_000_000));
        let ticked = KernelClock {
            mono_ns: 6_000_000_000,
            unix_ns: 1_001_500_000_100,
        };
        assert!(!ticked.drifted_from(&clock, 1_000_000_000));
    }
}
