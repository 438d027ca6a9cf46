//! Signatures made, kept per RRset: an answer whose RRset was signed
//! recently enough is sent with the same RRSIGs, and a background sweep
//! signs again those that near the end of their freshness, so that no
//! answer waits for a signature that could have been made earlier.
//!
//! The cache is bounded in entries and bytes (least recently used goes
//! first, recency sampled: see [`SignatureCache::get`]). When it is full, RRsets are still signed, on demand; it is never
//! cleared at once: an entry is replaced when the keys that sign its type
//! change, by the sweep or by the next answer that needs it.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU32, Ordering},
};

use hickory_proto::{
    rr::{Name, RData, RecordType},
    serialize::binary::{BinEncodable, BinEncoder, NameEncoding},
};
use lru::LruCache;

/// Shards, each with its own lock, so answering threads rarely wait on
/// one another.
const SHARDS: usize = 16;

/// One RRset as it is signed: owner, type, TTL and data.
#[derive(Clone, Debug, PartialEq)]
pub struct RrsetData {
    pub owner: Name,
    pub record_type: RecordType,
    pub ttl: u32,
    pub rdatas: Vec<RData>,
}

/// Appends `value` to `buffer` in canonical form (RFC 4034 §6.2: names
/// uncompressed and lowercase). A value that does not encode adds
/// nothing; it would not sign either.
fn canonical(buffer: &mut Canonical, value: &impl BinEncodable) {
    // hickory's encoder writes from the start of the buffer it is given.
    let mut encoded = Vec::new();
    let mut encoder = BinEncoder::new(&mut encoded);
    encoder.set_canonical_form(true);
    encoder.set_name_encoding(NameEncoding::UncompressedLowercase);
    if value.emit(&mut encoder).is_ok() {
        buffer.extend_from_slice(&encoded);
    }
}

/// An RRset's canonical form, built on the stack for the most common
/// (an owner and a few addresses): a key is made for every answer.
type Canonical = smallvec::SmallVec<[u8; 160]>;

/// An RRset in canonical form (RFC 4034 §6: lowercase owner, records
/// sorted by their canonical data), so that an answer in a rotated order
/// is the same RRset. `owner` is the owner's lowercase wire form.
fn canonical_rrset(owner: &[u8], record_type: RecordType, ttl: u32, rdatas: &[RData]) -> Canonical {
    let mut key = Canonical::new();
    key.extend_from_slice(owner);
    key.extend_from_slice(&u16::from(record_type).to_be_bytes());
    key.extend_from_slice(&ttl.to_be_bytes());
    let data = |rdata: &RData, key: &mut Canonical| {
        let start = key.len();
        key.extend_from_slice(&[0, 0]);
        // Addresses, what most answers hold, are their own canonical
        // form: no encoder needed.
        match rdata {
            RData::A(a) => key.extend_from_slice(&a.0.octets()),
            RData::AAAA(aaaa) => key.extend_from_slice(&aaaa.0.octets()),
            other => canonical(key, other),
        }
        let len = (key.len() - start - 2) as u16;
        key[start..start + 2].copy_from_slice(&len.to_be_bytes());
    };
    match rdatas {
        // Most answers: nothing to sort.
        [one] => data(one, &mut key),
        _ => {
            let mut parts: Vec<Canonical> = rdatas
                .iter()
                .map(|rdata| {
                    let mut part = Canonical::new();
                    data(rdata, &mut part);
                    part
                })
                .collect();
            // Sorted by data (the length prefix aside), and each once.
            parts.sort_by(|a, b| a[2..].cmp(&b[2..]));
            parts.dedup();
            for part in parts {
                key.extend_from_slice(&part);
            }
        }
    }
    key
}

/// The tags of the keys that sign one RRset: seldom more than two.
pub type KeyTags = smallvec::SmallVec<[u16; 4]>;

/// The signatures of one RRset.
#[derive(Clone, Debug)]
pub struct Signed {
    pub rrsigs: Arc<[RData]>,
    /// When the first of them expires.
    pub expiration: u32,
    /// The tags of the keys that made them: when the keys that sign the
    /// RRset's type change, they are made again. Inline: an answer reads
    /// them, and one more pointer to follow is one more cache miss.
    pub keys: KeyTags,
}

struct Entry {
    rrset: RrsetData,
    signed: Signed,
    bytes: usize,
}

struct Shard {
    entries: LruCache<Key, Entry, ahash::RandomState>,
    bytes: usize,
    hits: u64,
    misses: u64,
}

/// What the cache holds and how it has served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: usize,
    pub hits: u64,
    pub misses: u64,
}

pub struct SignatureCache {
    shards: Vec<Mutex<Shard>>,
    max_entries: usize,
    max_bytes: usize,
    hashers: [ahash::RandomState; 2],
    /// See [`SignatureCache::first_expiration`].
    first_expiration: AtomicU32,
}

/// See [`SignatureCache::get`].
const PROMOTE_EVERY: u64 = 8;

/// See [`SignatureCache::key`].
pub type Key = u128;

/// Roughly what an entry costs besides its key: the RRset's data and the
/// signatures, with the bookkeeping around them.
fn entry_bytes(rrset: &RrsetData, signed: &Signed) -> usize {
    let signatures: usize = signed
        .rrsigs
        .iter()
        .map(|rrsig| match rrsig {
            RData::Unknown { rdata, .. } => rdata.anything.len(),
            _ => 0,
        })
        .sum::<usize>()
        + signed.rrsigs.len() * std::mem::size_of::<RData>();
    let data = rrset.owner.len() + rrset.rdatas.len() * std::mem::size_of::<RData>();
    data + signatures + std::mem::size_of::<(Key, Entry)>() + 2 * std::mem::size_of::<usize>()
}

impl SignatureCache {
    pub fn new(max_entries: usize, max_bytes: usize) -> SignatureCache {
        let per_shard = |total: usize| total.div_ceil(SHARDS).max(1);
        SignatureCache {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        entries: LruCache::unbounded_with_hasher(ahash::RandomState::new()),
                        bytes: 0,
                        hits: 0,
                        misses: 0,
                    })
                })
                .collect(),
            max_entries: per_shard(max_entries),
            max_bytes: per_shard(max_bytes),
            hashers: [ahash::RandomState::new(), ahash::RandomState::new()],
            first_expiration: AtomicU32::new(u32::MAX),
        }
    }

    /// The key of an RRset: 128 bits of its canonical form, from two
    /// hashes keyed at random when the daemon starts (so no one can make
    /// two RRsets meet, and chance will not in the life of the universe).
    /// A key is 16 bytes in the entry, not a copy of the RRset to compare.
    pub fn key(&self, owner: &[u8], record_type: RecordType, ttl: u32, rdatas: &[RData]) -> Key {
        let bytes = canonical_rrset(owner, record_type, ttl, rdatas);
        let [high, low] = self
            .hashers
            .each_ref()
            .map(|hasher| hasher.hash_one(&bytes));
        (u128::from(high) << 64) | u128::from(low)
    }

    fn shard(&self, key: Key) -> &Mutex<Shard> {
        &self.shards[(key as usize) % SHARDS]
    }

    /// The signatures kept for `key`, if `usable` takes them.
    ///
    /// One hit in [`PROMOTE_EVERY`] moves its entry to the front of the
    /// recency order (the rest only read it): moving an entry writes to
    /// its neighbours, cache misses on every answer, and an RRset asked
    /// often is still moved often enough never to reach the back.
    pub fn get(&self, key: Key, usable: impl Fn(&Signed) -> bool) -> Option<Arc<[RData]>> {
        let mut shard = self.shard(key).lock().ok()?;
        let found = shard
            .entries
            .peek(&key)
            .filter(|entry| usable(&entry.signed))
            .map(|entry| entry.signed.rrsigs.clone());
        // Counted under the shard's lock: no counter shared by every
        // answering thread.
        match found {
            Some(_) => {
                shard.hits += 1;
                if shard.hits % PROMOTE_EVERY == 0 {
                    shard.entries.promote(&key);
                }
            }
            None => shard.misses += 1,
        }
        found
    }

    /// Keeps `signed` for `rrset`, making room by dropping the least
    /// recently used entries.
    pub fn put(&self, key: Key, rrset: RrsetData, signed: Signed) {
        let bytes = entry_bytes(&rrset, &signed);
        if bytes > self.max_bytes {
            return;
        }
        self.first_expiration
            .fetch_min(signed.expiration, Ordering::Relaxed);
        let Ok(mut shard) = self.shard(key).lock() else {
            return;
        };
        if let Some(old) = shard.entries.put(
            key,
            Entry {
                rrset,
                signed,
                bytes,
            },
        ) {
            shard.bytes -= old.bytes;
        }
        shard.bytes += bytes;
        while shard.entries.len() > self.max_entries || shard.bytes > self.max_bytes {
            match shard.entries.pop_lru() {
                Some((_, evicted)) => shard.bytes -= evicted.bytes,
                None => break,
            }
        }
    }

    /// Up to `limit` RRsets whose signatures `due` says to make again,
    /// with their keys; the entries stay until replaced (by
    /// [`SignatureCache::refresh`]).
    pub fn due(
        &self,
        due: impl Fn(&RrsetData, &Signed) -> bool,
        limit: usize,
    ) -> Vec<(Key, RrsetData)> {
        // Entries put while the sweep runs lower the bound themselves.
        self.first_expiration.store(u32::MAX, Ordering::Relaxed);
        let mut found = Vec::new();
        let mut first_kept = u32::MAX;
        for shard in &self.shards {
            let Ok(shard) = shard.lock() else { continue };
            for (key, entry) in shard.entries.iter() {
                if found.len() >= limit {
                    // Not all seen: the next sweep looks again.
                    self.first_expiration.store(0, Ordering::Relaxed);
                    return found;
                }
                if due(&entry.rrset, &entry.signed) {
                    found.push((*key, entry.rrset.clone()));
                } else {
                    first_kept = first_kept.min(entry.signed.expiration);
                }
            }
        }
        self.first_expiration
            .fetch_min(first_kept, Ordering::Relaxed);
        found
    }

    /// No signature in the cache expires before this (a bound, perhaps
    /// low): until due, a sweep has nothing to look for.
    pub fn first_expiration(&self) -> u32 {
        self.first_expiration.load(Ordering::Relaxed)
    }

    /// Replaces the signatures of `key` if it is still kept, without
    /// making it the most recently used.
    pub fn refresh(&self, key: Key, signed: Signed) {
        self.first_expiration
            .fetch_min(signed.expiration, Ordering::Relaxed);
        if let Ok(mut shard) = self.shard(key).lock()
            && let Some(entry) = shard.entries.peek_mut(&key)
        {
            entry.signed = signed;
        }
    }

    pub fn stats(&self) -> CacheStats {
        let mut stats = CacheStats::default();
        for shard in &self.shards {
            if let Ok(shard) = shard.lock() {
                stats.entries += shard.entries.len();
                stats.bytes += shard.bytes;
                stats.hits += shard.hits;
                stats.misses += shard.misses;
            }
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn rrset(owner: &str, addrs: &[u8]) -> RrsetData {
        RrsetData {
            owner: Name::from_ascii(owner).unwrap(),
            record_type: RecordType::A,
            ttl: 60,
            rdatas: addrs
                .iter()
                .map(|last| RData::A(Ipv4Addr::new(198, 18, 0, *last).into()))
                .collect(),
        }
    }

    fn signed(key: u16) -> Signed {
        Signed {
            rrsigs: Arc::from(Vec::new()),
            expiration: 100,
            keys: KeyTags::from_slice(&[key]),
        }
    }

    impl RrsetData {
        fn key(&self) -> Canonical {
            let mut owner = Canonical::new();
            canonical(&mut owner, &self.owner);
            canonical_rrset(&owner, self.record_type, self.ttl, &self.rdatas)
        }

        fn in_cache(&self, cache: &SignatureCache) -> Key {
            let mut owner = Canonical::new();
            canonical(&mut owner, &self.owner);
            cache.key(&owner, self.record_type, self.ttl, &self.rdatas)
        }
    }

    #[test]
    fn a_rotated_rrset_in_another_case_has_the_same_key() {
        assert_eq!(
            rrset("www.example.com.", &[1, 2, 3]).key(),
            rrset("WWW.Example.com.", &[3, 1, 2]).key()
        );
        assert_ne!(
            rrset("www.example.com.", &[1, 2]).key(),
            rrset("www.example.com.", &[1, 2, 3]).key()
        );
        // Two owners with the same data are two RRsets.
        let cname = |owner: &str| RrsetData {
            owner: Name::from_ascii(owner).unwrap(),
            record_type: RecordType::CNAME,
            ttl: 60,
            rdatas: vec![RData::CNAME(hickory_proto::rr::rdata::CNAME(
                Name::from_ascii("target.example.com.").unwrap(),
            ))],
        };
        assert_ne!(cname("a.example.com.").key(), cname("b.example.com.").key());
        // The encoder's canonical form and the addresses' own agree.
        let mut encoded = Canonical::new();
        canonical(&mut encoded, &RData::A(Ipv4Addr::new(198, 18, 0, 1).into()));
        assert_eq!(encoded.as_slice(), [198, 18, 0, 1]);
    }

    #[test]
    fn the_cache_keeps_its_bounds_and_counts_hits() {
        let cache = SignatureCache::new(SHARDS * 2, usize::MAX);
        for last in 0..=255u8 {
            let set = rrset("www.example.com.", &[last]);
            cache.put(set.in_cache(&cache), set, signed(1));
        }
        let stats = cache.stats();
        assert!(stats.entries <= SHARDS * 2, "{stats:?}");
        let kept = rrset("www.example.com.", &[255]);
        assert!(cache.get(kept.in_cache(&cache), |_| true).is_some());
        assert!(
            cache
                .get(kept.in_cache(&cache), |s| s.keys.as_slice() == [2])
                .is_none()
        );
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (1, 1));

        let small = SignatureCache::new(usize::MAX, 64 << 10);
        for last in 0..=255u8 {
            let set = rrset("www.example.com.", &[last, last.wrapping_add(1), 7, 8, 9]);
            small.put(set.in_cache(&small), set, signed(1));
        }
        assert!(small.stats().bytes <= 64 << 10, "{:?}", small.stats());
        assert!(small.stats().entries > 0);
    }

    /// Recency is sampled, yet an RRset asked for all the while stays as
    /// a thousand others pass through, while one never asked for again
    /// goes. Each shard holds more entries than puts can land in it
    /// between two promotions (one each PROMOTE_EVERY hits), so the
    /// outcome does not hang on where the others hash to.
    #[test]
    fn an_rrset_in_use_outlives_a_stream_of_others() {
        let cache = SignatureCache::new(SHARDS * (PROMOTE_EVERY as usize + 1), usize::MAX);
        let hot = rrset("hot.example.com.", &[1]);
        let cold = rrset("cold.example.com.", &[2]);
        for set in [&hot, &cold] {
            cache.put(set.in_cache(&cache), set.clone(), signed(1));
        }
        for n in 0..1000u32 {
            let owner = format!("n{n}.example.com.");
            let set = rrset(&owner, &[3]);
            cache.put(set.in_cache(&cache), set, signed(1));
            assert!(
                cache.get(hot.in_cache(&cache), |_| true).is_some(),
                "evicted after {n}"
            );
        }
        assert!(cache.get(cold.in_cache(&cache), |_| true).is_none());
    }
}
