//! Ethernet / IPv4 or IPv6 / UDP: finding the DNS payload, and turning the
//! frame around once the answer is in place.

use aya_ebpf::programs::XdpContext;
use dns_common::{Counter, V4_MAPPED_PREFIX, guard::Guard};

use crate::{DNS_PORT, config, guard};

const ETH_LEN: usize = 14;
const VLAN_LEN: usize = 4;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const IPV4_MIN_LEN: usize = 20;
/// 32-bit words of options an IPv4 header can carry (60 bytes in all).
const MAX_IPV4_OPTION_WORDS: usize = 10;
pub const IPV6_LEN: usize = 40;
const IPPROTO_UDP: u8 = 17;
/// IPv6 next-header values of extension headers that may precede UDP:
/// hop-by-hop, routing, fragment, destination options. The kernel does not
/// walk them; such queries go to the daemon.
const IPV6_EXTENSION_HEADERS: [u8; 4] = [0, 43, 44, 60];
pub const UDP_LEN: usize = 8;
/// The TTL (IPv4) or hop limit (IPv6) we send answers with, as Linux does
/// by default.
const REPLY_TTL: u8 = 64;

/// Where a UDP datagram to the DNS port sits in the frame.
#[derive(Clone, Copy)]
pub struct Datagram {
    /// Offset of the IP header: after Ethernet and an optional VLAN tag.
    pub l3: usize,
    /// Offset of the UDP header.
    pub l4: usize,
    /// UDP payload length, as both the IP and the UDP header agree.
    pub payload_len: usize,
    /// Whether it came over IPv6.
    pub v6: bool,
    /// The client's address as IPv6, network order (IPv4 mapped into
    /// `::ffff:0:0/96`).
    pub source: [u8; 16],
}

impl Datagram {
    pub fn payload(&self) -> usize {
        self.l4 + UDP_LEN
    }
}

/// Returns a pointer to `len` bytes at `offset`, if the frame holds them.
#[inline(always)]
pub fn bytes_at(ctx: &XdpContext, offset: usize, len: usize) -> Option<*mut u8> {
    let start = ctx.data();
    if start + offset + len > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *mut u8)
}

#[inline(always)]
fn read_u16(p: *const u8) -> u16 {
    // SAFETY: callers only pass pointers obtained from `bytes_at` with enough
    // length for this read; packet data has no alignment guarantee, hence
    // the unaligned read.
    u16::from_be(unsafe { (p as *const u16).read_unaligned() })
}

/// Finds a UDP datagram to our port and one of our addresses, or says why
/// this frame is not one.
#[inline(always)]
pub fn find_datagram(ctx: &XdpContext, us: &Guard) -> Result<Datagram, Counter> {
    let eth = bytes_at(ctx, 0, ETH_LEN).ok_or(Counter::PassNotDns)?;
    // SAFETY: `eth` covers ETH_LEN bytes.
    if unsafe { *eth } & 1 != 0 {
        // Multicast or broadcast (neighbour discovery, mDNS, ...): never a
        // unicast question to this server.
        return Err(Counter::PassNotDns);
    }
    let mut ethertype = read_u16(eth.wrapping_add(12));
    let mut l3 = ETH_LEN;
    if ethertype == ETH_P_8021Q {
        let tag = bytes_at(ctx, ETH_LEN, VLAN_LEN).ok_or(Counter::PassMalformed)?;
        ethertype = read_u16(tag.wrapping_add(2));
        l3 += VLAN_LEN;
    }
    let datagram = match ethertype {
        ETH_P_IPV4 => ipv4_datagram(ctx, l3, us),
        ETH_P_IPV6 => ipv6_datagram(ctx, l3, us),
        ETH_P_8021Q => Err(Counter::PassUnsupported),
        _ => Err(Counter::PassNotDns),
    }?;
    // Another host's frame (a NIC in promiscuous mode, a bridge port):
    // the host's stack would not take it, so neither do we.
    if !guard::is_our_mac(us, eth) {
        return Err(Counter::PassNotOurs);
    }
    Ok(datagram)
}

#[inline(always)]
fn ipv4_datagram(ctx: &XdpContext, l3: usize, us: &Guard) -> Result<Datagram, Counter> {
    let ip = bytes_at(ctx, l3, IPV4_MIN_LEN).ok_or(Counter::PassMalformed)?;
    // SAFETY (all reads from `ip` below): `ip` covers IPV4_MIN_LEN bytes.
    let version_ihl = unsafe { *ip };
    let header_len = ((version_ihl & 0x0f) as usize) * 4;
    if version_ihl >> 4 != 4 || header_len < IPV4_MIN_LEN {
        return Err(Counter::PassMalformed);
    }
    if unsafe { *ip.wrapping_add(9) } != IPPROTO_UDP {
        return Err(Counter::PassNotDns);
    }
    // The host's stack drops a header whose checksum is wrong (a bit
    // flipped on the way: the source address may be another's), and the
    // answer's checksum is derived from it: so do we.
    if !ipv4_checksum_holds(ctx, ip, l3, header_len) {
        return Err(Counter::PassMalformed);
    }
    if read_u16(ip.wrapping_add(6)) & 0x3fff != 0 {
        // More-fragments set or a non-zero offset: only the daemon's socket
        // sees the reassembled datagram.
        return Err(Counter::PassUnsupported);
    }
    let total_len = read_u16(ip.wrapping_add(2)) as usize;
    let mut source = [0u8; 16];
    source[..12].copy_from_slice(&V4_MAPPED_PREFIX);
    // SAFETY: bytes 12..16 of the IPV4_MIN_LEN bytes `ip` covers.
    let v4 = unsafe { (ip.wrapping_add(12) as *const [u8; 4]).read_unaligned() };
    source[12..].copy_from_slice(&v4);

    let l4 = l3 + header_len;
    let udp_len = udp_to_us(ctx, l4)?;
    if total_len != header_len + udp_len || l3 + total_len > frame_len(ctx) {
        return Err(Counter::PassMalformed);
    }
    // SAFETY: bytes 16..20 of the IPV4_MIN_LEN bytes `ip` covers.
    let destination = unsafe { (ip.wrapping_add(16) as *const [u8; 4]).read_unaligned() };
    if !guard::is_local_v4(us, destination) {
        return Err(Counter::PassNotOurs);
    }
    Ok(Datagram {
        l3,
        l4,
        payload_len: udp_len - UDP_LEN,
        v6: false,
        source,
    })
}

/// Whether the IPv4 header of `header_len` bytes at `l3` (`ip` checked to
/// cover its first 20) sums to its checksum: the fixed words, then each
/// 32-bit word of options, bounds-checked one by one for the verifier.
#[inline(always)]
fn ipv4_checksum_holds(ctx: &XdpContext, ip: *const u8, l3: usize, header_len: usize) -> bool {
    let mut sum = 0u64;
    for word in 0..IPV4_MIN_LEN / 2 {
        sum += u64::from(read_u16(ip.wrapping_add(2 * word)));
    }
    for option in 0..MAX_IPV4_OPTION_WORDS {
        let at = IPV4_MIN_LEN + 4 * option;
        if at >= header_len {
            break;
        }
        let Some(word) = bytes_at(ctx, l3 + at, 4) else {
            return false;
        };
        sum += u64::from(read_u16(word)) + u64::from(read_u16(word.wrapping_add(2)));
    }
    fold(sum) == 0xffff
}

/// IPv6 with UDP right after the fixed header; a query behind extension
/// headers passes to the daemon.
#[inline(always)]
fn ipv6_datagram(ctx: &XdpContext, l3: usize, us: &Guard) -> Result<Datagram, Counter> {
    let ip = bytes_at(ctx, l3, IPV6_LEN).ok_or(Counter::PassMalformed)?;
    // SAFETY (all reads from `ip` below): `ip` covers IPV6_LEN bytes.
    if unsafe { *ip } >> 4 != 6 {
        return Err(Counter::PassMalformed);
    }
    let next_header = unsafe { *ip.wrapping_add(6) };
    if next_header != IPPROTO_UDP {
        return Err(if IPV6_EXTENSION_HEADERS.contains(&next_header) {
            Counter::PassUnsupported
        } else {
            Counter::PassNotDns
        });
    }
    let payload_len = read_u16(ip.wrapping_add(4)) as usize;
    // SAFETY: bytes 8..24 of the IPV6_LEN bytes `ip` covers.
    let source = unsafe { (ip.wrapping_add(8) as *const [u8; 16]).read_unaligned() };
    let l4 = l3 + IPV6_LEN;
    let udp_len = udp_to_us(ctx, l4)?;
    let udp = bytes_at(ctx, l4, UDP_LEN).ok_or(Counter::PassMalformed)?;
    // A zero UDP checksum is not allowed over IPv6 (RFC 8200 §8.1), and the
    // answer's checksum is derived from the query's.
    if payload_len != udp_len || l4 + udp_len > frame_len(ctx) || read_u16(udp.wrapping_add(6)) == 0
    {
        return Err(Counter::PassMalformed);
    }
    // SAFETY: bytes 24..40 of the IPV6_LEN bytes `ip` covers.
    let destination = unsafe { (ip.wrapping_add(24) as *const [u8; 16]).read_unaligned() };
    if !guard::is_local_v6(us, &destination) {
        return Err(Counter::PassNotOurs);
    }
    Ok(Datagram {
        l3,
        l4,
        payload_len: udp_len - UDP_LEN,
        v6: true,
        source,
    })
}

#[inline(always)]
fn frame_len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}

/// Checks that the UDP header at `l4` is to our port from a real port,
/// and returns the UDP length it gives.
#[inline(always)]
fn udp_to_us(ctx: &XdpContext, l4: usize) -> Result<usize, Counter> {
    let udp = bytes_at(ctx, l4, UDP_LEN).ok_or(Counter::PassMalformed)?;
    if read_u16(udp.wrapping_add(2)) != config(&DNS_PORT) {
        return Err(Counter::PassNotDns);
    }
    let udp_len = read_u16(udp.wrapping_add(4)) as usize;
    if read_u16(udp) == 0 || udp_len < UDP_LEN {
        return Err(Counter::PassMalformed);
    }
    Ok(udp_len)
}

/// One's-complement update of an Internet checksum when a 16-bit word of
/// the covered data changes from `old` to `new` (RFC 1624, eqn. 3). Works in
/// either byte order as long as all three values use the same one.
#[inline(always)]
fn checksum_update(check: u16, old: u16, new: u16) -> u16 {
    let mut sum = (!check as u32) + (!old as u32) + (new as u32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Folds a one's-complement sum to 16 bits.
#[inline(always)]
pub fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The UDP checksum of an IPv6 answer (RFC 8200 §8.1): the pseudo-header
/// (the two addresses, which only swap places, the UDP length and the next
/// header), the UDP header (the ports, which only swap, and the length),
/// and `dns`, the folded big-endian sum of the DNS message. `ip` and `udp`
/// must each be checked to cover their header.
#[inline(always)]
pub fn checksum_v6(ip: *const u8, udp: *const u8, udp_len: u16, dns: u16) -> u16 {
    let mut sum = 2 * u64::from(udp_len) + u64::from(IPPROTO_UDP) + u64::from(dns);
    for word in 0..16 {
        sum += u64::from(read_u16(ip.wrapping_add(8 + 2 * word)));
    }
    sum += u64::from(read_u16(udp)) + u64::from(read_u16(udp.wrapping_add(2)));
    match !fold(sum) {
        0 => 0xffff,
        check => check,
    }
}

/// Swaps the Ethernet addresses, as a 32-bit and a 16-bit word each.
/// `eth` must cover the Ethernet header.
#[inline(always)]
fn swap_macs(eth: *mut u8) {
    // SAFETY: bytes 0..12 of the header the caller checked; unaligned
    // accesses, as packet data has no alignment guarantee.
    unsafe {
        let destination = (eth as *const u32).read_unaligned();
        let destination_tail = (eth.add(4) as *const u16).read_unaligned();
        (eth as *mut u32).write_unaligned((eth.add(6) as *const u32).read_unaligned());
        (eth.add(4) as *mut u16).write_unaligned((eth.add(10) as *const u16).read_unaligned());
        (eth.add(6) as *mut u32).write_unaligned(destination);
        (eth.add(10) as *mut u16).write_unaligned(destination_tail);
    }
}

/// Swaps the ports and sets the UDP length and checksum for a payload of
/// `payload_len` bytes. `udp` must cover the UDP header.
#[inline(always)]
fn answer_udp(udp: *mut u8, payload_len: usize, check: u16) {
    // SAFETY: the four 16-bit words of the header the caller checked.
    unsafe {
        let udp_words = udp as *mut u16;
        let source_port = udp_words.read_unaligned();
        udp_words.write_unaligned(udp_words.add(1).read_unaligned());
        udp_words.add(1).write_unaligned(source_port);
        udp_words
            .add(2)
            .write_unaligned(((UDP_LEN + payload_len) as u16).to_be());
        udp_words.add(3).write_unaligned(check.to_be());
    }
}

/// Turns an IPv4 frame around: swaps MAC, IP and port pairs, sets the IP
/// total length, TTL and checksum, and the UDP length, for a payload of
/// `payload_len` bytes. The UDP checksum is set to zero, which IPv4 allows
/// (RFC 768) and which every stack accepts.
///
/// `eth`, `ip` and `udp` must each be checked to cover their header.
#[inline(always)]
pub fn turn_around(
    eth: *mut u8,
    ip: *mut u8,
    udp: *mut u8,
    payload_len: usize,
    ip_header_len: usize,
) {
    swap_macs(eth);
    // SAFETY (whole block): the caller checked that `ip` covers 20 bytes;
    // all accesses stay within those.
    unsafe {
        let ip_words = ip as *mut u16;
        let old_len = ip_words.add(1).read_unaligned();
        let new_len = ((ip_header_len + UDP_LEN + payload_len) as u16).to_be();
        let old_ttl_proto = ip_words.add(4).read_unaligned();
        *ip.add(8) = REPLY_TTL;
        let new_ttl_proto = ip_words.add(4).read_unaligned();
        ip_words.add(1).write_unaligned(new_len);
        let mut check = ip_words.add(5).read_unaligned();
        check = checksum_update(check, old_len, new_len);
        check = checksum_update(check, old_ttl_proto, new_ttl_proto);
        ip_words.add(5).write_unaligned(check);
        // Swapping source and destination leaves the checksum as it is.
        let addrs = ip.add(12) as *mut u32;
        let source = addrs.read_unaligned();
        addrs.write_unaligned(addrs.add(1).read_unaligned());
        addrs.add(1).write_unaligned(source);
    }
    answer_udp(udp, payload_len, 0);
}

/// Turns an IPv6 frame around: swaps MAC, address and port pairs, sets the
/// payload length, hop limit, UDP length and the UDP `checksum` (from
/// [`answer_checksum`]).
///
/// `eth`, `ip` and `udp` must each be checked to cover their header.
#[inline(always)]
pub fn turn_around_v6(eth: *mut u8, ip: *mut u8, udp: *mut u8, payload_len: usize, checksum: u16) {
    swap_macs(eth);
    // SAFETY (whole block): the caller checked that `ip` covers the 40-byte
    // header; all accesses stay within it.
    unsafe {
        (ip.add(4) as *mut u16).write_unaligned(((UDP_LEN + payload_len) as u16).to_be());
        *ip.add(7) = REPLY_TTL;
        let addrs = ip.add(8) as *mut u64;
        for i in 0..2 {
            let source = addrs.add(i).read_unaligned();
            addrs
                .add(i)
                .write_unaligned(addrs.add(2 + i).read_unaligned());
            addrs.add(2 + i).write_unaligned(source);
        }
    }
    answer_udp(udp, payload_len, checksum);
}
