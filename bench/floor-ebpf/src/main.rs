//! The floor of the benchmark: the least any XDP DNS responder must do to
//! a query to make it look like a reply. Swap the MAC, IP and port pairs,
//! set QR, clear the UDP checksum over IPv4 (the QR bit would break it;
//! over IPv6 it is left wrong, which kxdpgun does not check), `XDP_TX`.
//! No parsing beyond fixed offsets, no lookup: it answers every UDP frame
//! with a plain 20-byte IPv4 header or a 40-byte IPv6 header.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const UDP_LEN: usize = 8;
const IPPROTO_UDP: u8 = 17;

#[xdp]
pub fn floor(ctx: XdpContext) -> u32 {
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
