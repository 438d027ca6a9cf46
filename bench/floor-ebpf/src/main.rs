//! The floor of the benchmark: the least any XDP DNS responder must do to
//! a query to make it look like a reply. Swap the MAC, IP and port pairs,
//! set QR, clear the UDP checksum over IPv4 (the QR bit would break it;
//! over IPv6 it is left wrong, which the load generator's reply sink does
//! not check), `XDP_TX`.
//! No parsing beyond fixed offsets, no lookup: it answers every UDP frame
//! with a plain 20-byte IPv4 header or a 40-byte IPv6 header.
//!
//! Two more programs measure, beside it in the micro-benchmark, what the
//! least responder that looks names up must add: `floor_lookup` finds the
//! first eight bytes of the query name in a hash map (passing on a miss),
//! `floor_answer` then also grows the frame by one A record and writes it.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_xdp_adjust_tail,
    macros::{map, xdp},
    maps::HashMap,
    programs::XdpContext,
};

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const UDP_LEN: usize = 8;
const IPPROTO_UDP: u8 = 17;

/// An A record (16 bytes) per key: the first eight bytes of a query name
/// as they lie in the frame.
#[map]
static FLOOR_RECORDS: HashMap<u64, [u8; RECORD_LEN]> = HashMap::with_max_entries(1024, 0);

const RECORD_LEN: usize = 16;
/// Where the query name starts in a frame with an IPv4 header.
const NAME_AT: usize = ETH_LEN + IPV4_LEN + UDP_LEN + 12;

#[xdp]
pub fn floor(ctx: XdpContext) -> u32 {
    turn_around(&ctx)
}

/// The floor plus one hash lookup; IPv4 only.
#[xdp]
pub fn floor_lookup(ctx: XdpContext) -> u32 {
    if lookup(&ctx).is_none() {
        return xdp_action::XDP_PASS;
    }
    turn_around(&ctx)
}

/// The floor plus one hash lookup and one A record appended; IPv4 only.
#[xdp]
pub fn floor_answer(ctx: XdpContext) -> u32 {
    let Some(record) = lookup(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    let len = (ctx.data_end() - ctx.data()) & 0x3ff;
    // SAFETY: plain helper call on our own context.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, RECORD_LEN as i32) } != 0 {
        return xdp_action::XDP_PASS;
    }
    let at = ctx.data() + len;
    if at + RECORD_LEN > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the check above covers the 16 bytes written.
    unsafe { core::ptr::copy_nonoverlapping(record.as_ptr(), at as *mut u8, RECORD_LEN) };
    turn_around(&ctx)
}

#[inline(always)]
fn lookup(ctx: &XdpContext) -> Option<&'static [u8; RECORD_LEN]> {
    let start = ctx.data();
    if start + NAME_AT + 8 > ctx.data_end() {
        return None;
    }
    // SAFETY: the check above covers the eight bytes read.
    let key = unsafe { ((start + NAME_AT) as *const u64).read_unaligned() };
    // SAFETY: the value is only read, and userspace writes records whole
    // before the benchmark runs.
    unsafe { FLOOR_RECORDS.get(key) }
}

#[inline(always)]
fn turn_around(ctx: &XdpContext) -> u32 {
    let start = ctx.data();
    if start + ETH_LEN + IPV6_LEN + UDP_LEN + 3 > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    let frame = start as *mut u8;
    // SAFETY: the check above covers every byte touched: MACs (0..12), the
    // IP header (at most 40 bytes), the UDP header and the DNS flags after
    // it.
    unsafe {
        let (addrs, addr_len, udp) = match *frame.add(12) {
            0x08 if *frame.add(ETH_LEN + 9) == IPPROTO_UDP => (ETH_LEN + 12, 4, ETH_LEN + IPV4_LEN),
            0x86 if *frame.add(ETH_LEN + 6) == IPPROTO_UDP => (ETH_LEN + 8, 16, ETH_LEN + IPV6_LEN),
            _ => return xdp_action::XDP_PASS,
        };
        for i in 0..6 {
            core::ptr::swap(frame.add(i), frame.add(6 + i));
        }
        for i in 0..16 {
            if i < addr_len {
                core::ptr::swap(frame.add(addrs + i), frame.add(addrs + addr_len + i));
            }
        }
        for i in 0..2 {
            core::ptr::swap(frame.add(udp + i), frame.add(udp + 2 + i));
        }
        if addr_len == 4 {
            *frame.add(udp + 6) = 0;
            *frame.add(udp + 7) = 0;
        }
        *frame.add(udp + UDP_LEN + 2) |= 0x80;
    }
    xdp_action::XDP_TX
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!(
        "floor-ebpf is an XDP program: dnslb-bench's build script compiles it for bpfel-unknown-none"
    );
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
