//! Response rate limiting for the daemon's UDP answers, by the rule the
//! kernel applies (`dns_common::guard`): the same key per client network,
//! the same bucket arithmetic, the same slip. With XDP the buckets are
//! the kernel's own map, so a network's budget is one whichever path
//! answers it; without, a table of the daemon's.

use std::{
    net::IpAddr,
    num::NonZeroUsize,
    sync::{Arc, Mutex},
};

use aya::maps::{HashMap, MapData};
use dns_common::guard::{Guard, RrlBucket, Verdict};
use ipnetwork::IpNetwork;
use lru::LruCache;
use nix::time::{ClockId, clock_gettime};

use crate::dataplane::{Dataplane, DataplaneError};

/// The limit, and where its buckets are.
pub struct RateLimiter {
    limit: Guard,
    exempt: Vec<IpNetwork>,
    buckets: Buckets,
}

enum Buckets {
    /// The kernel's map: each UDP thread takes a handle of its own.
    Kernel(Mutex<Vec<HashMap<MapData, u64, RrlBucket>>>),
    /// Without XDP: one table, least recently seen networks evicted.
    Local(Arc<Mutex<LruCache<u64, RrlBucket>>>),
}

/// One UDP thread's view of the limiter.
pub struct ThreadLimiter {
    limit: Guard,
    exempt: Vec<IpNetwork>,
    table: Table,
}

enum Table {
    Kernel(HashMap<MapData, u64, RrlBucket>),
    Local(Arc<Mutex<LruCache<u64, RrlBucket>>>),
}

impl RateLimiter {
    /// A limiter with its own table of `capacity` networks.
    pub fn local(limit: Guard, exempt: Vec<IpNetwork>, capacity: u32) -> RateLimiter {
        let capacity = NonZeroUsize::new(capacity as usize).unwrap_or(NonZeroUsize::MIN);
        RateLimiter {
            limit,
            exempt,
            buckets: Buckets::Local(Arc::new(Mutex::new(LruCache::new(capacity)))),
        }
    }

    /// A limiter on the kernel's buckets, with a handle for each of
    /// `threads` UDP threads.
    pub fn kernel(
        limit: Guard,
        exempt: Vec<IpNetwork>,
        dataplane: &Dataplane,
        threads: usize,
    ) -> Result<RateLimiter, DataplaneError> {
        let handles = (0..threads)
            .map(|_| dataplane.rate_buckets())
            .collect::<Result<_, _>>()?;
        Ok(RateLimiter {
            limit,
            exempt,
            buckets: Buckets::Kernel(Mutex::new(handles)),
        })
    }

    /// The limiter for one more UDP thread.
    pub fn for_thread(&self) -> Option<ThreadLimiter> {
        let table = match &self.buckets {
            Buckets::Kernel(handles) => Table::Kernel(handles.lock().ok()?.pop()?),
            Buckets::Local(table) => Table::Local(table.clone()),
        };
        Some(ThreadLimiter {
            limit: self.limit,
            exempt: self.exempt.clone(),
            table,
        })
    }
}

impl ThreadLimiter {
    /// Takes an answer to `client` from its network's bucket. `proven` is
    /// asked only when the network is over its rate: whether the query
    /// carries a valid server cookie (a client that proved it receives our
    /// answers, so not a spoofed source).
    pub fn take(&mut self, client: IpAddr, proven: impl FnOnce() -> bool) -> Verdict {
        if !self.limit.limits() {
            return Verdict::Answer;
        }
        // The kernel's rule: IPv4 mapped into IPv6, as the program sees it.
        let key = self.limit.key(match client {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        });
        let bucket = self.get(key).unwrap_or_default();
        let (verdict, next) = self.limit.take(bucket, monotonic_ns());
        if verdict != Verdict::Answer
            && (self.exempt.iter().any(|net| net.contains(client)) || proven())
        {
            return Verdict::Answer;
        }
        self.put(key, next);
        verdict
    }

    fn get(&mut self, key: u64) -> Option<RrlBucket> {
        match &mut self.table {
            Table::Kernel(map) => map.get(&key, 0).ok(),
            Table::Local(table) => table.lock().ok()?.get(&key).copied(),
        }
    }

    fn put(&mut self, key: u64, bucket: RrlBucket) {
        match &mut self.table {
            // A failed write (the map is full of buckets in use by other
            // CPUs at this instant) lets one answer through unlimited.
            Table::Kernel(map) => {
                let _ = map.insert(key, bucket, 0);
            }
            Table::Local(table) => {
                if let Ok(mut table) = table.lock() {
                    table.put(key, bucket);
                }
            }
        }
    }
}

/// Nanoseconds on `CLOCK_MONOTONIC`, the clock `bpf_ktime_get_ns` reads,
/// so that the daemon's and the kernel's schedules agree.
fn monotonic_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        (t.tv_sec() as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(t.tv_nsec() as u64)
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use dns_common::guard::RateLimit;

    use super::*;

    fn limiter(exempt: &[&str]) -> ThreadLimiter {
        let limit = RateLimit::per_second(1, 3, 2).guard([0; 6]);
        let exempt = exempt.iter().map(|net| net.parse().unwrap()).collect();
        RateLimiter::local(limit, exempt, 16)
            .for_thread()
            .expect("a local table")
    }

    fn tally(
        limiter: &mut ThreadLimiter,
        client: IpAddr,
        count: usize,
        proven: bool,
    ) -> [usize; 3] {
        let mut tally = [0; 3];
        for _ in 0..count {
            let index = match limiter.take(client, || proven) {
                Verdict::Answer => 0,
                Verdict::Slip => 1,
                Verdict::Drop => 2,
            };
            tally[index] += 1;
        }
        tally
    }

    // One answer a second: these run in microseconds, a second apart
    // would be needed for a token to come back.
    #[test]
    fn networks_get_the_burst_then_slips_and_drops() {
        let mut limiter = limiter(&["192.0.2.0/24"]);
        let client = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
        assert_eq!(tally(&mut limiter, client, 9, false), [3, 3, 3]);
        let neighbour = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 8));
        assert_eq!(tally(&mut limiter, neighbour, 2, false), [0, 1, 1]);
        let mapped: IpAddr = "::ffff:198.51.100.9".parse().unwrap();
        assert_eq!(
            tally(&mut limiter, mapped, 2, false),
            [0, 1, 1],
            "mapped is IPv4"
        );
        assert_eq!(tally(&mut limiter, client, 4, true), [4, 0, 0], "cookie");
        let exempt = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(tally(&mut limiter, exempt, 9, false), [9, 0, 0]);
    }
}
