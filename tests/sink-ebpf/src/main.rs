//! The load generator's reply sink, attached to the client's interface:
//! every DNS reply to one of the generator's source ports is counted (in
//! all, truncated, by response code) and dropped, so that counting costs
//! the client next to nothing and the client's stack never sees the
//! flood. Every other frame passes untouched.
//!
//! It uses no helper beyond map lookups, so it loads wherever an XDP
//! program that counts can (unlike AF_XDP tools whose programs need
//! `bpf_xdp_adjust_meta`, refused on some kernels).
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};
use dns_common::wire::{FLAGS0_QR, FLAGS0_TC, HEADER_LEN};
use sink_ebpf::{TALLY_COUNT, Tally};

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const UDP_LEN: usize = 8;
const IPPROTO_UDP: u8 = 17;

#[unsafe(no_mangle)]
static SERVER_PORT: u16 = 53;
#[unsafe(no_mangle)]
static PORT_BASE: u16 = 0;
#[unsafe(no_mangle)]
static PORT_COUNT: u16 = 0;

#[map]
static TALLY: PerCpuArray<u64> = PerCpuArray::with_max_entries(TALLY_COUNT, 0);

#[xdp]
pub fn reply_sink(ctx: XdpContext) -> u32 {
    match reply_flags(&ctx) {
        Some(flags) => {
            count(Tally::Replies);
            if flags[0] & FLAGS0_TC != 0 {
                count(Tally::Truncated);
            }
            count(Tally::of_rcode(flags[1] & 0x0f));
            xdp_action::XDP_DROP
        }
        None => xdp_action::XDP_PASS,
    }
}

/// The DNS header's flag bytes, if the frame is a reply from the server's
/// port to one of the generator's ports.
#[inline(always)]
fn reply_flags(ctx: &XdpContext) -> Option<[u8; 2]> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + ETH_LEN + IPV4_LEN > end {
        return None;
    }
    // SAFETY: each read lies within a span checked before it: the
    // Ethernet and least IPv4 header just above, the IPv6 header in its
    // arm.
    let udp = unsafe {
        match read_u16(start + 12) {
            0x0800 if read_u8(start + ETH_LEN + 9) == IPPROTO_UDP => {
                start + ETH_LEN + usize::from(read_u8(start + ETH_LEN) & 0x0f) * 4
            }
            0x86dd if start + ETH_LEN + IPV6_LEN <= end => {
                if read_u8(start + ETH_LEN + 6) != IPPROTO_UDP {
                    return None;
                }
                start + ETH_LEN + IPV6_LEN
            }
            _ => return None,
        }
    };
    if udp + UDP_LEN + HEADER_LEN > end {
        return None;
    }
    // SAFETY: the UDP and DNS headers lie within the frame (checked just
    // above).
    let (source, destination, flags) = unsafe {
        (
            read_u16(udp),
            read_u16(udp + 2),
            [read_u8(udp + UDP_LEN + 2), read_u8(udp + UDP_LEN + 3)],
        )
    };
    let ours = destination.wrapping_sub(global(&PORT_BASE)) < global(&PORT_COUNT);
    (source == global(&SERVER_PORT) && ours && flags[0] & FLAGS0_QR != 0).then_some(flags)
}

#[inline(always)]
fn count(tally: Tally) {
    if let Some(counter) = TALLY.get_ptr_mut(tally as u32) {
        // SAFETY: this CPU's own slot of a per-CPU array; nothing else
        // writes it while the program runs here.
        unsafe { *counter += 1 };
    }
}

/// A big-endian u16 at `at`.
///
/// # Safety
/// `at..at + 2` must lie within the frame.
#[inline(always)]
unsafe fn read_u16(at: usize) -> u16 {
    // SAFETY: the caller's promise.
    u16::from_be(unsafe { (at as *const u16).read_unaligned() })
}

/// # Safety
/// `at` must lie within the frame.
#[inline(always)]
unsafe fn read_u8(at: usize) -> u8 {
    // SAFETY: the caller's promise.
    unsafe { *(at as *const u8) }
}

/// A global userspace sets in `.rodata` at load time; the volatile read
/// keeps the compiler from folding in the default.
#[inline(always)]
fn global(value: &'static u16) -> u16 {
    // SAFETY: a plain read of a valid, aligned, immutable static.
    unsafe { core::ptr::read_volatile(value) }
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!(
        "sink-ebpf is an XDP program: dnslb-tests' build script compiles it for bpfel-unknown-none"
    );
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
