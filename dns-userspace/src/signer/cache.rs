//! Signatures made, kept per RRset: an answer whose RRset was signed
//! recently enough is sent with the same RRSIGs, and a background sweep
//! signs again those that near the end of their freshness, so that no
//! answer waits for a signature that could have been made earlier.
//!
//! The cache is bounded in entries and bytes (least recently used goes
//! first). When it is full, RRsets are still signed, on demand; it is never
//! cleared at once: an entry is replaced when the keys that sign its type
//! change, by the sweep or by the next answer that needs it.

use std::sync::{Arc, Mutex};

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
fn canonical(buffer: &mut Vec<u8>, value: &impl BinEncodable) {
    // hickory's encoder writes from the start of the buffer it is given.
    let mut encoded = Vec::new();
    let mut encoder = BinEncoder::new(&mut encoded);
    encoder.set_canonical_form(true);
    encoder.set_name_encoding(NameEncoding::UncompressedLowercase);
    if value.emit(&mut encoder).is_ok() {
        buffer.extend_from_slice(&encoded);
    }
}

/// An RRset in canonical form (RFC 4034 §6: lowercase owner, records
/// sorted by their canonical data), so that an answer in a rotated order
/// is the same RRset. `owner` is the owner's lowercase wire form.
fn canonical_rrset(owner: &[u8], record_type: RecordType, ttl: u32, rdatas: &[RData]) -> Vec<u8> {
    let mut key = Vec::with_capacity(owner.len() + 8 + 20 * rdatas.len());
    key.extend_from_slice(owner);
    key.extend_from_slice(&u16::from(record_type).to_be_bytes());
    key.extend_from_slice(&ttl.to_be_bytes());
    let data = |rdata: &RData, key: &mut Vec<u8>| {
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
            let mut parts: Vec<Vec<u8>> = rdatas
                .iter()
                .map(|rdata| {
                    let mut part = Vec::new();
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

/// The signatures of one RRset.
#[derive(Clone, Debug)]
pub struct Signed {
    pub rrsigs: Arc<[RData]>,
    /// When the first of them expires.
    pub expiration: u32,
    /// The tags of the keys that made them: when the keys that sign the
    /// RRset's type change, they are made again.
    pub keys: Vec<u16>,
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
}

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
    pub fn get(&self, key: Key, usable: impl Fn(&Signed) -> bool) -> Option<Arc<[RData]>> {
        let mut shard = self.shard(key).lock().ok()?;
        let found = shard
            .entries
            .get(&key)
            .filter(|entry| usable(&entry.signed))
            .map(|entry| entry.signed.rrsigs.clone());
        // Counted under the shard's lock: no counter shared by every
        // answering thread.
        match found {
            Some(_) => shard.hits += 1,
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
    /// with their keys; the entries stay until replaced.
    pub fn due(
        &self,
        due: impl Fn(&RrsetData, &Signed) -> bool,
        limit: usize,
    ) -> Vec<(Key, RrsetData)> {
        let mut found = Vec::new();
        for shard in &self.shards {
            let Ok(shard) = shard.lock() else { continue };
            for (key, entry) in shard.entries.iter() {
                if found.len() >= limit {
                    return found;
                }
                if due(&entry.rrset, &entry.signed) {
                    found.push((*key, entry.rrset.clone()));
                }
            }
        }
        found
    }

    /// Replaces the signatures of `key` if it is still kept, without
    /// making it the most recently used.
    pub fn refresh(&self, key: Key, signed: Signed) {
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
            keys: vec![key],
        }
    }

    impl RrsetData {
        fn key(&self) -> Vec<u8> {
            let mut owner = Vec::new();
            canonical(&mut owner, &self.owner);
            canonical_rrset(&owner, self.record_type, self.ttl, &self.rdatas)
        }

        fn in_cache(&self, cache: &SignatureCache) -> Key {
            let mut owner = Vec::new();
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
        let mut encoded = Vec::new();
        canonical(&mut encoded, &RData::A(Ipv4Addr::new(198, 18, 0, 1).into()));
        assert_eq!(encoded, [198, 18, 0, 1]);
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
                .get(kept.in_cache(&cache), |s| s.keys == [2])
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
}
