//! DNS server cookies as RFC 9018 makes them interoperable: version 1, a
//! reserved field, a timestamp, and SipHash-2-4 over the client cookie,
//! those 8 bytes and the client's address, keyed by the server secret.
//! The kernel and the daemon mint and check cookies with these functions,
//! so a cookie from one is valid at the other (and at every server of a
//! fleet given the same secret).
//!
//! Everything here is straight-line 64-bit arithmetic, which the BPF
//! verifier accepts as it is.

/// The server cookie version of RFC 9018.
pub const VERSION: u8 = 1;
/// A cookie older than this many seconds is no longer valid (RFC 9018 §4.3).
pub const MAX_AGE: i32 = 3600;
/// Nor is one from more than this many seconds in the future.
pub const MAX_AHEAD: i32 = 300;
/// A valid cookie younger than this is echoed as it came; an older one is
/// replaced by a fresh one (RFC 9018 §4.3: regenerate after half an hour).
pub const REFRESH_AGE: i32 = 1800;

/// The kernel's copy of the secrets and the clock, one entry of the
/// `COOKIE_SECRETS` array, written by the daemon.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CookieSecrets {
    /// The SipHash key new cookies are made with.
    pub current: [u64; 2],
    /// The key before the last rotation, still accepted while
    /// `has_previous` is 1 (RFC 9018 §5).
    pub previous: [u64; 2],
    /// Nanoseconds to add to `CLOCK_BOOTTIME` to get Unix time: the kernel
    /// has no cheap wall clock, the daemon refreshes this.
    pub clock_offset_ns: u64,
    pub has_previous: u32,
    pub _pad: u32,
}

impl CookieSecrets {
    /// Secrets from 16-byte keys, read as two little-endian words each, the
    /// way SipHash reads its key.
    pub fn from_keys(current: [u8; 16], previous: Option<[u8; 16]>) -> CookieSecrets {
        CookieSecrets {
            current: le_words(current),
            previous: previous.map_or([0; 2], le_words),
            clock_offset_ns: 0,
            has_previous: u32::from(previous.is_some()),
            _pad: 0,
        }
    }
}

/// Sixteen bytes (a key, an IPv6 address, a server cookie) as the two
/// little-endian words SipHash and [`CookieSecrets::reply`] take them as.
#[inline(always)]
pub fn le_words(bytes: [u8; 16]) -> [u64; 2] {
    let [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p] = bytes;
    [
        u64::from_le_bytes([a, b, c, d, e, f, g, h]),
        u64::from_le_bytes([i, j, k, l, m, n, o, p]),
    ]
}

/// SipHash-2-4 state (Aumasson and Bernstein), fed whole 8-byte blocks.
struct SipHash24 {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl SipHash24 {
    #[inline(always)]
    fn new(key: &[u64; 2]) -> SipHash24 {
        SipHash24 {
            v0: key[0] ^ 0x736f_6d65_7073_6575,
            v1: key[1] ^ 0x646f_7261_6e64_6f6d,
            v2: key[0] ^ 0x6c79_6765_6e65_7261,
            v3: key[1] ^ 0x7465_6462_7974_6573,
        }
    }

    #[inline(always)]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13) ^ self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16) ^ self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21) ^ self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17) ^ self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    #[inline(always)]
    fn block(&mut self, m: u64) {
        self.v3 ^= m;
        self.round();
        self.round();
        self.v0 ^= m;
    }

    /// `last` is the final block: the message's remaining bytes with its
    /// length (mod 256) in the top byte.
    #[inline(always)]
    fn finish(mut self, last: u64) -> u64 {
        self.block(last);
        self.v2 ^= 0xff;
        self.round();
        self.round();
        self.round();
        self.round();
        self.v0 ^ self.v1 ^ self.v2 ^ self.v3
    }
}

/// Version, reserved and timestamp (seconds, big-endian) as the second
/// 8-byte block of the hash input, and bytes 0..8 of the server cookie.
#[inline(always)]
pub fn stamp_block(timestamp: u32) -> u64 {
    u64::from(VERSION) | (u64::from(u32::from_le_bytes(timestamp.to_be_bytes())) << 32)
}

/// The timestamp of a [`stamp_block`].
#[inline(always)]
fn stamp_timestamp(stamp: u64) -> u32 {
    u32::from_be_bytes(((stamp >> 32) as u32).to_le_bytes())
}

/// The cookie hash for an IPv4 client: `client_cookie` and `address` are
/// the wire bytes read as little-endian integers.
#[inline(always)]
pub fn hash_v4(key: &[u64; 2], client_cookie: u64, stamp: u64, address: u32) -> u64 {
    let mut sip = SipHash24::new(key);
    sip.block(client_cookie);
    sip.block(stamp);
    sip.finish(u64::from(address) | (20 << 56))
}

/// The cookie hash for an IPv6 client (the address as two little-endian
/// words).
#[inline(always)]
pub fn hash_v6(key: &[u64; 2], client_cookie: u64, stamp: u64, address: [u64; 2]) -> u64 {
    let mut sip = SipHash24::new(key);
    sip.block(client_cookie);
    sip.block(stamp);
    sip.block(address[0]);
    sip.block(address[1]);
    sip.finish(32 << 56)
}

/// Seconds from `timestamp` to `now`, in serial number arithmetic.
#[inline(always)]
pub fn age(now: u32, timestamp: u32) -> i32 {
    now.wrapping_sub(timestamp) as i32
}

/// Whether a cookie of `age` seconds is inside its validity window.
#[inline(always)]
pub fn age_is_valid(age: i32) -> bool {
    (-MAX_AHEAD..=MAX_AGE).contains(&age)
}

/// A client address as the cookie hash reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CookieAddr {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl CookieAddr {
    #[inline(always)]
    fn hash(&self, key: &[u64; 2], client_cookie: u64, stamp: u64) -> u64 {
        match self {
            CookieAddr::V4(v4) => hash_v4(key, client_cookie, stamp, u32::from_le_bytes(*v4)),
            CookieAddr::V6(v6) => hash_v6(key, client_cookie, stamp, le_words(*v6)),
        }
    }
}

impl CookieSecrets {
    /// The server cookie an answer carries, as two little-endian words
    /// (version, reserved and timestamp; hash), for the client cookie
    /// `client` from `addr` at Unix time `now`. `received` is the 16-byte
    /// server cookie the query came with, if it had one of that size: it
    /// is echoed if it is valid under the current secret and younger than
    /// [`REFRESH_AGE`]; anything else gets a fresh one. The one rule both
    /// the kernel and the daemon answer by.
    #[inline(always)]
    pub fn reply(
        &self,
        now: u32,
        client: u64,
        received: Option<[u64; 2]>,
        addr: CookieAddr,
    ) -> [u64; 2] {
        if let Some([stamp, hash]) = received {
            let age = age(now, stamp_timestamp(stamp));
            if stamp as u8 == VERSION
                && age_is_valid(age)
                && age < REFRESH_AGE
                && addr.hash(&self.current, client, stamp) == hash
            {
                return [stamp, hash];
            }
        }
        let stamp = stamp_block(now);
        [stamp, addr.hash(&self.current, client, stamp)]
    }

    /// A fresh server cookie for `client` from `addr` at `now`, as bytes.
    pub fn mint(&self, now: u32, client: [u8; 8], addr: CookieAddr) -> [u8; SERVER_COOKIE] {
        let [stamp, hash] = self.reply(now, u64::from_le_bytes(client), None, addr);
        let mut cookie = [0; SERVER_COOKIE];
        cookie[..8].copy_from_slice(&stamp.to_le_bytes());
        cookie[8..].copy_from_slice(&hash.to_le_bytes());
        cookie
    }

    /// Whether `server` is a valid cookie under either secret (for
    /// clients that earned one: the rate limiter's exemption).
    pub fn is_valid(&self, now: u32, client: [u8; 8], server: &[u8], addr: CookieAddr) -> bool {
        let Ok(server) = <[u8; SERVER_COOKIE]>::try_from(server) else {
            return false;
        };
        let [stamp, hash] = le_words(server);
        if stamp as u8 != VERSION || !age_is_valid(age(now, stamp_timestamp(stamp))) {
            return false;
        }
        let client = u64::from_le_bytes(client);
        addr.hash(&self.current, client, stamp) == hash
            || (self.has_previous == 1 && addr.hash(&self.previous, client, stamp) == hash)
    }
}

const SERVER_COOKIE: usize = crate::wire::SERVER_COOKIE_LEN;

#[cfg(test)]
mod tests {
    use core::hash::Hasher;

    use siphasher::sip::SipHasher24;

    use super::*;

    fn reference(key: [u8; 16], message: &[u8]) -> u64 {
        let mut hasher = SipHasher24::new_with_key(&key);
        hasher.write(message);
        hasher.finish()
    }

    /// The block-at-a-time form agrees with the siphasher crate for both
    /// input lengths the cookie hash uses.
    #[test]
    fn hashes_match_siphash_2_4() {
        let key: [u8; 16] = core::array::from_fn(|i| (i * 7 + 3) as u8);
        let client = *b"\x24\x64\xc4\xab\xcf\x10\xc9\x57";
        let timestamp = 0x5c5c_8e95;
        let stamp = stamp_block(timestamp);
        let mut head = client.to_vec();
        head.extend_from_slice(&[1, 0, 0, 0]);
        head.extend_from_slice(&timestamp.to_be_bytes());
        assert_eq!(&stamp.to_le_bytes()[..], &head[8..16]);

        let v4 = [198, 51, 100, 100];
        let v6: [u8; 16] = core::array::from_fn(|i| 0x20 + i as u8);
        for addr in [CookieAddr::V4(v4), CookieAddr::V6(v6)] {
            let mut message = head.clone();
            match addr {
                CookieAddr::V4(a) => message.extend_from_slice(&a),
                CookieAddr::V6(a) => message.extend_from_slice(&a),
            }
            let made = addr.hash(&le_words(key), u64::from_le_bytes(client), stamp);
            assert_eq!(made, reference(key, &message), "{addr:?}");
        }
    }

    /// Whether `cookie` comes back unchanged in the answer.
    fn echoed(
        secrets: &CookieSecrets,
        now: u32,
        client: [u8; 8],
        cookie: [u8; 16],
        addr: CookieAddr,
    ) -> bool {
        let received = le_words(cookie);
        secrets.reply(now, u64::from_le_bytes(client), Some(received), addr) == received
    }

    #[test]
    fn replies_and_validity() {
        let secrets = CookieSecrets::from_keys([9; 16], Some([8; 16]));
        let addr = CookieAddr::V4([198, 18, 0, 1]);
        let client = [1, 2, 3, 4, 5, 6, 7, 8];
        let now = 1_800_000_000;
        let cookie = secrets.mint(now, client, addr);
        assert!(echoed(&secrets, now + 10, client, cookie, addr));
        assert!(secrets.is_valid(now + 10, client, &cookie, addr));
        let other_addr = CookieAddr::V4([198, 18, 0, 2]);
        assert!(!echoed(&secrets, now, client, cookie, other_addr));
        assert_eq!(
            secrets.reply(
                now + 20,
                u64::from_le_bytes(client),
                Some(le_words(cookie)),
                other_addr
            ),
            le_words(secrets.mint(now + 20, client, other_addr)),
            "a cookie that is not echoed is replaced by a fresh one"
        );
        assert!(
            !echoed(&secrets, now + REFRESH_AGE as u32, client, cookie, addr),
            "due for renewal"
        );
        assert!(secrets.is_valid(now + REFRESH_AGE as u32, client, &cookie, addr));
        let mut reserved = cookie;
        reserved[1] = 1;
        assert!(
            !echoed(&secrets, now, client, reserved, addr),
            "reserved bytes are hashed"
        );
        assert!(
            !secrets.is_valid(now + MAX_AGE as u32 + 1, client, &cookie, addr),
            "expired"
        );
        assert!(
            !secrets.is_valid(now - MAX_AHEAD as u32 - 1, client, &cookie, addr),
            "future"
        );

        let rotated = CookieSecrets::from_keys([7; 16], Some([9; 16]));
        assert!(
            rotated.is_valid(now, client, &cookie, addr),
            "previous secret accepted"
        );
        assert!(!echoed(&rotated, now, client, cookie, addr));
        let forgotten = CookieSecrets::from_keys([7; 16], None);
        assert!(
            !forgotten.is_valid(now, client, &cookie, addr),
            "wrong secret"
        );
    }
}
