//! The floor of the benchmark: the least any XDP DNS responder must do to
//! a query to make it look like a reply. Swap the MAC, IP and port pairs,
//! set QR, clear the UDP checksum (the QR bit would break it), `XDP_TX`.
//! No parsing beyond fixed offsets, no lookup: it answers every UDP frame
//! with a plain 20-byte IPv4 header.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;
const UDP_LEN: usize = 8;
const DNS_FLAGS: usize = ETH_LEN + IP_LEN + UDP_LEN + 2;

#[xdp]
pub fn floor(ctx: XdpContext) -> u32 {
    let start = ctx.data();
    if start + DNS_FLAGS + 1 > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    let frame = start as *mut u8;
    // SAFETY: the check above covers every byte touched: MACs (0..12), IP
    // addresses (26..34), ports and checksum (34..42), DNS flags (44).
    unsafe {
        if *frame.add(ETH_LEN + 9) != 17 {
            return xdp_action::XDP_PASS;
        }
        for i in 0..6 {
            core::ptr::swap(frame.add(i), frame.add(6 + i));
        }
        for i in 0..4 {
            core::ptr::swap(frame.add(ETH_LEN + 12 + i), frame.add(ETH_LEN + 16 + i));
        }
        for i in 0..2 {
            core::ptr::swap(
                frame.add(ETH_LEN + IP_LEN + i),
                frame.add(ETH_LEN + IP_LEN + 2 + i),
            );
        }
        *frame.add(ETH_LEN + IP_LEN + 6) = 0;
        *frame.add(ETH_LEN + IP_LEN + 7) = 0;
        *frame.add(DNS_FLAGS) |= 0x80;
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
