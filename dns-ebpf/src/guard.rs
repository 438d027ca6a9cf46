//! Who is answered, and how much: frames addressed to this host only, and
//! a response rate limit per client network (`dns_common::guard`).

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{HashMap, LpmTrie, LruHashMap, lpm_trie::Key},
};
use dns_common::{
    CLIENT_NET_SERVICE_BITS, ClientNetKey, V4_MAPPED_PREFIX,
    guard::{GUARD_V4_ADDRS, GUARD_V6_ADDRS, Guard, RrlBucket, Verdict},
};

use crate::packet::Datagram;

/// Userspace sizes the bucket table at load time (`--rate-limit-table`).
const DEFAULT_BUCKETS: u32 = 65536;

/// One entry, under key 0, replaced whole by the daemon.
#[map]
static GUARD: HashMap<u32, Guard> = HashMap::with_max_entries(1, 0);

/// The addresses answered on, IPv4 mapped into IPv6, when the guard
/// cannot hold them all; the value is unused.
#[map]
static LOCAL_ADDRS: HashMap<[u8; 16], u8> = HashMap::with_max_entries(256, 0);

/// One bucket per client network; the least recently used make room.
#[map]
static RRL_BUCKETS: LruHashMap<u64, RrlBucket> = LruHashMap::with_max_entries(DEFAULT_BUCKETS, 0);

/// Client networks never limited, IPv4 mapped into IPv6, keyed as the
/// client-net tries are, under service 0. The four bytes before the
/// address are not for show: they put it 8-byte aligned on the stack,
/// where the verifier refuses the unaligned 8-byte stores LLVM copies a
/// bare 16-byte key after the trie key's 4-byte prefix length with.
#[map]
static RRL_EXEMPT: LpmTrie<ClientNetKey, u8> = LpmTrie::with_max_entries(1024, BPF_F_NO_PREALLOC);

/// The guard, once the daemon has written it.
#[inline(always)]
pub fn get() -> Option<&'static Guard> {
    // SAFETY: the map only reads the key; the value is replaced whole,
    // never written in place.
    unsafe { GUARD.get(0) }.filter(|guard| guard.ready == 1)
}

/// Whether `destination` is an IPv4 address the daemon listens on.
#[inline(always)]
pub fn is_local_v4(us: &Guard, destination: [u8; 4]) -> bool {
    let wanted = u32::from_ne_bytes(destination);
    for i in 0..GUARD_V4_ADDRS {
        if i >= usize::from(us.v4_count) {
            break;
        }
        if u32::from_ne_bytes(us.v4[i]) == wanted {
            return true;
        }
    }
    us.addrs_in_map == 1 && in_map(&mapped(destination))
}

/// Whether `destination` is an IPv6 address the daemon listens on.
#[inline(always)]
pub fn is_local_v6(us: &Guard, destination: &[u8; 16]) -> bool {
    let halves = |addr: &[u8; 16]| {
        let [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p] = *addr;
        (
            u64::from_ne_bytes([a, b, c, d, e, f, g, h]),
            u64::from_ne_bytes([i, j, k, l, m, n, o, p]),
        )
    };
    let wanted = halves(destination);
    for i in 0..GUARD_V6_ADDRS {
        if i >= usize::from(us.v6_count) {
            break;
        }
        if halves(&us.v6[i]) == wanted {
            return true;
        }
    }
    us.addrs_in_map == 1 && in_map(destination)
}

#[inline(always)]
fn in_map(destination: &[u8; 16]) -> bool {
    // SAFETY: the map only reads the key.
    unsafe { LOCAL_ADDRS.get(destination) }.is_some()
}

#[inline(always)]
fn mapped(v4: [u8; 4]) -> [u8; 16] {
    let mut addr = [0u8; 16];
    addr[..12].copy_from_slice(&V4_MAPPED_PREFIX);
    addr[12..].copy_from_slice(&v4);
    addr
}

/// Whether the MAC address at `mac` (6 readable bytes) is the interface's.
#[inline(always)]
pub fn is_our_mac(guard: &Guard, mac: *const u8) -> bool {
    // SAFETY: the caller checked that `mac` covers 6 bytes; unaligned
    // reads, as packet data has no alignment guarantee.
    let (head, tail) = unsafe {
        (
            (mac as *const u32).read_unaligned(),
            (mac.add(4) as *const u16).read_unaligned(),
        )
    };
    let ours = &guard.mac;
    head == u32::from_ne_bytes([ours[0], ours[1], ours[2], ours[3]])
        && tail == u16::from_ne_bytes([ours[4], ours[5]])
}

/// Takes one answer for the client of `datagram` from its network's
/// bucket. A limited client that presented a valid server cookie
/// (`cookie_valid`: it proved it receives our answers, so it is not a
/// spoofed source) or is in an exempt network is answered all the same.
#[inline(always)]
pub fn rate_limit(guard: &Guard, datagram: &Datagram, cookie_valid: bool) -> Verdict {
    if !guard.limits() {
        return Verdict::Answer;
    }
    let s = datagram.source;
    let key = if datagram.v6 {
        guard.v6_key(u64::from_be_bytes([
            s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
        ]))
    } else {
        guard.v4_key(u32::from_be_bytes([s[12], s[13], s[14], s[15]]))
    };
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let slot = RRL_BUCKETS.get_ptr_mut(key);
    // SAFETY: a pointer from the map lookup is valid for the program run.
    let bucket = slot.map(|slot| unsafe { *slot }).unwrap_or_default();
    let (verdict, next) = guard.take(bucket, now);
    if verdict != Verdict::Answer && (cookie_valid || is_exempt(s)) {
        return Verdict::Answer;
    }
    match slot {
        // SAFETY: as above. Another CPU may update the same bucket at the
        // same time; one of the two writes is lost, which at worst lets
        // one more answer through.
        Some(slot) => unsafe { *slot = next },
        None => {
            // A full table evicts its least recently used bucket; a
            // failed insert leaves this network unlimited for one answer.
            let _ = RRL_BUCKETS.insert(key, next, 0);
        }
    }
    verdict
}

#[inline(always)]
fn is_exempt(source: [u8; 16]) -> bool {
    let key = ClientNetKey {
        service: [0; 4],
        addr: source,
    };
    RRL_EXEMPT
        .get(Key::new(CLIENT_NET_SERVICE_BITS + 128, key))
        .is_some()
}
