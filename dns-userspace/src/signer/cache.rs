//! Signatures made, kept per RRset: an answer whose RRset was signed
//! recently enough is sent with the same RRSIGs, and a background sweep
//! signs again those that near the end of their freshness, so that no
//! answer waits for a signature that could have been made earlier.
//!
//! The cache is bounded in entries and bytes (least recently used goes
//! first). When it is full, RRsets are still signed, on demand; it is never
//! cleared at once: an entry is replaced when the keys that sign its type
//! change, by the sweep or by the next answer that needs it.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
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
#[derive(Clone, Debug)]
pub struct RrsetData {
    pub owner: Name,
    pub record_type: RecordType,
    pub ttl: u32,
    pub rdatas: Vec<RData>,
}

impl RrsetData {
    /// The cache key: the RRset in canonical form (RFC 4034 §6: lowercase
    /// owner, records sorted by their canonical data), so an answer in a
    /// rotated order finds the same entry.
    pub fn key(&self) -> Vec<u8> {
        let mut datas: Vec<Vec<u8>> = self
            .rdatas
            .iter()
            .map(|rdata| {
                let mut bytes = Vec::new();
                let mut encoder = BinEncoder::new(&mut bytes);
                encoder.set_canonical_form(true);
                encoder.set_name_encoding(NameEncoding::UncompressedLowercase);
                // An RData that does not encode gets an empty key part; it
                // would not sign either.
                let _ = rdata.emit(&mut encoder);
                bytes
            })
            .collect();
        datas.sort();
        datas.dedup();
        let mut key = self.owner.to_lowercase().to_ascii().into_bytes();
        key.extend_from_slice(&u16::from(self.record_type).to_be_bytes());
        key.extend_from_slice(&self.ttl.to_be_bytes());
        for data in datas {
            key.extend_from_slice(&(data.len() as u16).to_be_bytes());
            key.extend_from_slice(&data);
        }
        key
    }
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
    entries: LruCache<Vec<u8>, Entry>,
    bytes: usize,
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
    hasher: ahash::RandomState,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Roughly what an entry costs besides its key: the RRset's data and the
/// signatures, with the bookkeeping around them.
fn entry_bytes(key: &[u8], rrset: &RrsetData, signed: &Signed) -> usize {
    let signatures: usize = signed
        .rrsigs
        .iter()
        .map(|rrsig| match rrsig {
            RData::DNSSEC(hickory_proto::dnssec::rdata::DNSSECRData::RRSIG(rrsig)) => {
                rrsig.sig().len() + rrsig.input().signer_name.len() + 24
            }
            _ => 0,
        })
        .sum();
    let data = key.len() + rrset.owner.len() + rrset.rdatas.len() * std::mem::size_of::<RData>();
    2 * key.len() + data + signatures + std::mem::size_of::<Entry>()
}

impl SignatureCache {
    pub fn new(max_entries: usize, max_bytes: usize) -> SignatureCache {
        let per_shard = |total: usize| total.div_ceil(SHARDS).max(1);
        SignatureCache {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        entries: LruCache::unbounded(),
                        bytes: 0,
                    })
                })
                .collect(),
            max_entries: per_shard(max_entries),
            max_bytes: per_shard(max_bytes),
            hasher: ahash::RandomState::new(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &[u8]) -> &Mutex<Shard> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// The signatures kept for `key`, if `usable` takes them.
    pub fn get(&self, key: &[u8], usable: impl Fn(&Signed) -> bool) -> Option<Signed> {
        let found = self
            .shard(key)
            .lock()
            .ok()
            .and_then(|mut shard| shard.entries.get(key).map(|entry| entry.signed.clone()))
            .filter(|signed| usable(signed));
        let counter = match found {
            Some(_) => &self.hits,
            None => &self.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keeps `signed` for `rrset`, making room by dropping the least
    /// recently used entries.
    pub fn put(&self, key: Vec<u8>, rrset: RrsetData, signed: Signed) {
        let bytes = entry_bytes(&key, &rrset, &signed);
        if bytes > self.max_bytes {
            return;
        }
        let Ok(mut shard) = self.shard(&key).lock() else {
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
    ) -> Vec<(Vec<u8>, RrsetData)> {
        let mut found = Vec::new();
        for shard in &self.shards {
            let Ok(shard) = shard.lock() else { continue };
            for (key, entry) in shard.entries.iter() {
                if found.len() >= limit {
                    return found;
                }
                if due(&entry.rrset, &entry.signed) {
                    found.push((key.clone(), entry.rrset.clone()));
                }
            }
        }
        found
    }

    /// Replaces the signatures of `key` if it is still kept, without
    /// making it the most recently used.
    pub fn refresh(&self, key: &[u8], signed: Signed) {
        if let Ok(mut shard) = self.shard(key).lock()
            && let Some(entry) = shard.entries.peek_mut(key)
        {
            entry.signed = signed;
        }
    }

    pub fn stats(&self) -> CacheStats {
        let (entries, bytes) = self
            .shards
            .iter()
            .filter_map(|shard| shard.lock().ok().map(|s| (s.entries.len(), s.bytes)))
            .fold((0, 0), |(e, b), (se, sb)| (e + se, b + sb));
        CacheStats {
            entries,
            bytes,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
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
    }

    #[test]
    fn the_cache_keeps_its_bounds_and_counts_hits() {
        let cache = SignatureCache::new(SHARDS * 2, usize::MAX);
        for last in 0..=255u8 {
            let set = rrset("www.example.com.", &[last]);
            cache.put(set.key(), set, signed(1));
        }
        let stats = cache.stats();
        assert!(stats.entries <= SHARDS * 2, "{stats:?}");
        let kept = rrset("www.example.com.", &[255]);
        assert!(cache.get(&kept.key(), |_| true).is_some());
        assert!(cache.get(&kept.key(), |s| s.keys == [2]).is_none());
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (1, 1));

        let small = SignatureCache::new(usize::MAX, 64 << 10);
        for last in 0..=255u8 {
            let set = rrset("www.example.com.", &[last, last.wrapping_add(1), 7, 8, 9]);
            small.put(set.key(), set, signed(1));
        }
        assert!(small.stats().bytes <= 64 << 10, "{:?}", small.stats());
        assert!(small.stats().entries > 0);
    }
}
