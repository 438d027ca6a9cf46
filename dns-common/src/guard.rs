//! Who the kernel answers, and how much.
//!
//! The program answers only frames addressed to this host (the interface's
//! MAC and one of the addresses the daemon listens on), and it limits the
//! answers each client network gets: response rate limiting (RRL) as Knot
//! and NSD do it, one token bucket per network. The daemon limits its own
//! UDP answers with the same buckets (the same map, or a table of its own
//! without XDP), so a network's budget is one whichever path answers.
//!
//! The bucket is kept as a GCRA schedule (the "theoretical arrival time"
//! of the next answer), which is a token bucket in one word: no division
//! and no refill arithmetic in the kernel; userspace precomputes the
//! interval and window.

use crate::V4_MAPPED_PREFIX;

/// The one entry of the `GUARD` array, written by the daemon.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Guard {
    /// Nanoseconds between answers at the limit (10^9 / rate); 0: no limit.
    pub interval_ns: u64,
    /// How far ahead of now a network's schedule may run: burst × interval.
    pub window_ns: u64,
    /// The mask of the IPv6 client network over the address's first 64
    /// bits (/56 by default), host order.
    pub v6_mask: u64,
    /// The mask of the IPv4 client network (/24 by default), host order.
    pub v4_mask: u32,
    /// Every Nth limited answer is sent truncated (TC=1), so a real
    /// resolver behind a spoofed flood still gets through over TCP; 0
    /// drops them all.
    pub slip: u32,
    /// The interface's MAC address: frames to another destination pass.
    pub mac: [u8; 6],
    /// 1 once the daemon has written the guard. Until then the program
    /// answers nothing: it does not yet know what is addressed to it.
    pub ready: u8,
    /// 1 when the addresses answered on are more than `v4` and `v6` hold:
    /// the `LOCAL_ADDRS` map has them all.
    pub addrs_in_map: u8,
    /// Valid entries in `v4` and `v6`.
    pub v4_count: u8,
    pub v6_count: u8,
    pub _pad: [u8; 6],
    /// The IPv4 addresses answered on (as they lie in the header), so that
    /// the usual host with a few addresses needs no map lookup for them.
    pub v4: [[u8; 4]; GUARD_V4_ADDRS],
    /// The same for IPv6.
    pub v6: [[u8; 16]; GUARD_V6_ADDRS],
}

/// Addresses of each family the guard holds itself.
pub const GUARD_V4_ADDRS: usize = 4;
pub const GUARD_V6_ADDRS: usize = 4;

/// A client network's bucket, the value of the `RRL_BUCKETS` LRU map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RrlBucket {
    /// When, on `CLOCK_MONOTONIC` (the kernel's `bpf_ktime_get_ns`), the
    /// network's schedule is next free. A new bucket is all zero: free now.
    pub due_ns: u64,
    /// Answers refused since the bucket was made, for `slip`.
    pub limited: u32,
    pub _pad: u32,
}

/// What the rate limit says of one answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate: answer.
    Answer,
    /// Over it, and this one is sent truncated (TC=1, no records).
    Slip,
    /// Over it: no answer.
    Drop,
}

/// Longest IPv6 client network the key holds (its first 64 bits).
pub const MAX_V6_PREFIX: u8 = 64;

/// The high word of every IPv4 network's key. No IPv6 network starts with
/// it (`ffff:ffff::` is multicast, never a source), so the families never
/// share a bucket.
const V4_KEY_TAG: u64 = 0xffff_ffff << 32;

impl Guard {
    /// The guard with `addrs` as the addresses answered on: held inline
    /// when they fit, else marked as in the `LOCAL_ADDRS` map.
    pub fn with_addrs(mut self, v4: &[[u8; 4]], v6: &[[u8; 16]]) -> Guard {
        self.v4 = [[0; 4]; GUARD_V4_ADDRS];
        self.v6 = [[0; 16]; GUARD_V6_ADDRS];
        let fits = v4.len() <= GUARD_V4_ADDRS && v6.len() <= GUARD_V6_ADDRS;
        self.addrs_in_map = u8::from(!fits);
        if fits {
            self.v4[..v4.len()].copy_from_slice(v4);
            self.v6[..v6.len()].copy_from_slice(v6);
            self.v4_count = v4.len() as u8;
            self.v6_count = v6.len() as u8;
        } else {
            (self.v4_count, self.v6_count) = (0, 0);
        }
        self
    }

    /// The mask of a `prefix`-bit IPv4 network.
    pub const fn v4_mask_of(prefix: u8) -> u32 {
        match prefix {
            0 => 0,
            p if p >= 32 => u32::MAX,
            p => u32::MAX << (32 - p),
        }
    }

    /// The mask of a `prefix`-bit IPv6 network, over the first 64 bits.
    pub const fn v6_mask_of(prefix: u8) -> u64 {
        match prefix {
            0 => 0,
            p if p >= MAX_V6_PREFIX => u64::MAX,
            p => u64::MAX << (64 - p),
        }
    }

    /// The bucket key of an IPv4 client (address in host order).
    #[inline(always)]
    pub fn v4_key(&self, addr: u32) -> u64 {
        V4_KEY_TAG | u64::from(addr & self.v4_mask)
    }

    /// The bucket key of an IPv6 client (its first 64 bits, host order).
    #[inline(always)]
    pub fn v6_key(&self, high: u64) -> u64 {
        high & self.v6_mask
    }

    /// The bucket key of a client given as IPv6 (IPv4 mapped).
    pub fn key(&self, addr: [u8; 16]) -> u64 {
        let [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p] = addr;
        if [a, b, c, d, e, f, g, h, i, j, k, l] == V4_MAPPED_PREFIX {
            self.v4_key(u32::from_be_bytes([m, n, o, p]))
        } else {
            self.v6_key(u64::from_be_bytes([a, b, c, d, e, f, g, h]))
        }
    }

    /// Whether answers are limited at all.
    #[inline(always)]
    pub fn limits(&self) -> bool {
        self.interval_ns != 0
    }

    /// Takes one answer from `bucket` at `now` (nanoseconds, monotonic):
    /// the verdict, and the bucket to store. An answer within the rate
    /// moves the schedule on by one interval; a refused one only counts.
    #[inline(always)]
    pub fn take(&self, bucket: RrlBucket, now: u64) -> (Verdict, RrlBucket) {
        let free_at = if bucket.due_ns > now {
            bucket.due_ns
        } else {
            now
        };
        let due = free_at.wrapping_add(self.interval_ns);
        if due.wrapping_sub(now) <= self.window_ns {
            let admitted = RrlBucket {
                due_ns: due,
                ..bucket
            };
            return (Verdict::Answer, admitted);
        }
        let limited = bucket.limited.wrapping_add(1);
        let verdict = match limited.checked_rem(self.slip) {
            Some(0) => Verdict::Slip,
            _ => Verdict::Drop,
        };
        (verdict, RrlBucket { limited, ..bucket })
    }
}

/// The rate limit as people set it, turned into a [`Guard`]'s fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Answers per second per client network; 0: unlimited.
    pub rate: u32,
    /// Answers a network may get at once, above the rate, after a quiet
    /// spell (at least 1).
    pub burst: u32,
    pub slip: u32,
    pub v4_prefix: u8,
    pub v6_prefix: u8,
}

/// The client network of an IPv4 address by default, as Knot DNS has it.
pub const DEFAULT_V4_PREFIX: u8 = 24;
/// The client network of an IPv6 address by default, as Knot DNS has it.
pub const DEFAULT_V6_PREFIX: u8 = 56;

impl RateLimit {
    /// `rate` answers a second, `burst` at once, every `slip`th limited
    /// answer truncated, over the default client networks.
    pub const fn per_second(rate: u32, burst: u32, slip: u32) -> RateLimit {
        RateLimit {
            rate,
            burst,
            slip,
            v4_prefix: DEFAULT_V4_PREFIX,
            v6_prefix: DEFAULT_V6_PREFIX,
        }
    }

    /// The guard of the interface with MAC address `mac`, with this limit.
    pub fn guard(&self, mac: [u8; 6]) -> Guard {
        let mut guard = Guard {
            mac,
            ..Guard::default()
        };
        self.apply(&mut guard);
        guard
    }

    /// Writes the limit into `guard`, leaving its addresses alone.
    pub fn apply(&self, guard: &mut Guard) {
        let interval_ns = match self.rate {
            0 => 0,
            rate => (1_000_000_000 / u64::from(rate)).max(1),
        };
        guard.interval_ns = interval_ns;
        guard.window_ns = interval_ns * u64::from(self.burst.max(1));
        guard.slip = self.slip;
        guard.v4_mask = Guard::v4_mask_of(self.v4_prefix);
        guard.v6_mask = Guard::v6_mask_of(self.v6_prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(rate: u32, burst: u32, slip: u32) -> Guard {
        RateLimit::per_second(rate, burst, slip).guard([0; 6])
    }

    /// Answers given in a row at one instant, then over `seconds` at
    /// `per_second` attempts a second.
    fn answered(guard: &Guard, at_once: u32, seconds: u64, per_second: u64) -> (u32, u32, u32) {
        let mut bucket = RrlBucket::default();
        let mut counts = (0, 0, 0);
        let start = 5_000_000_000u64;
        let attempts = (0..at_once)
            .map(|_| start)
            .chain((0..seconds * per_second).map(|i| start + i * 1_000_000_000 / per_second));
        for now in attempts {
            let (verdict, next) = guard.take(bucket, now);
            bucket = next;
            match verdict {
                Verdict::Answer => counts.0 += 1,
                Verdict::Slip => counts.1 += 1,
                Verdict::Drop => counts.2 += 1,
            }
        }
        counts
    }

    #[test]
    fn a_burst_then_the_rate() {
        let limit = guard(100, 20, 0);
        let (answers, slips, drops) = answered(&limit, 50, 0, 1);
        assert_eq!(
            (answers, slips, drops),
            (20, 0, 30),
            "the burst, then nothing"
        );
        // 1,000 a second for 2 s: the burst plus 100 a second.
        let (answers, _, _) = answered(&limit, 0, 2, 1000);
        assert!((215..=221).contains(&answers), "{answers}");
    }

    #[test]
    fn under_the_rate_nothing_is_limited() {
        assert_eq!(answered(&guard(100, 1, 2), 0, 3, 90), (270, 0, 0));
    }

    #[test]
    fn every_nth_limited_answer_slips() {
        let (answers, slips, drops) = answered(&guard(10, 5, 2), 105, 0, 1);
        assert_eq!((answers, slips, drops), (5, 50, 50));
        let (_, slips, drops) = answered(&guard(10, 5, 1), 105, 0, 1);
        assert_eq!((slips, drops), (100, 0), "slip 1: every one");
    }

    #[test]
    fn networks_are_keyed_by_prefix_and_family() {
        let limit = guard(1, 1, 0);
        let v4 = |a: [u8; 4]| {
            let mut addr = [0; 16];
            addr[..12].copy_from_slice(&V4_MAPPED_PREFIX);
            addr[12..].copy_from_slice(&a);
            limit.key(addr)
        };
        assert_eq!(v4([198, 18, 1, 1]), v4([198, 18, 1, 200]));
        assert_ne!(v4([198, 18, 1, 1]), v4([198, 18, 2, 1]));
        let v6 = |last: u8, seventh: u8| {
            let mut addr = [
                0x20, 0x01, 0x0d, 0xb8, 0, 0, seventh, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ];
            addr[15] = last;
            addr[7] = last;
            limit.key(addr)
        };
        assert_eq!(v6(1, 0), v6(9, 0), "same /56");
        assert_ne!(v6(1, 0), v6(1, 1), "another /56");
        assert_ne!(v4([0, 0, 0, 0]), limit.v6_key(0));
        assert_eq!(Guard::v4_mask_of(0), 0);
        assert_eq!(Guard::v4_mask_of(32), u32::MAX);
        assert_eq!(Guard::v6_mask_of(64), u64::MAX);
    }
}
