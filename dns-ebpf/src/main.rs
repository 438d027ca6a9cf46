//! dnslb's XDP data plane.
//!
//! For every frame: is it a UDP DNS query, over IPv4 or IPv6, for an A or
//! AAAA RRset we hold in the hot-name maps, with EDNS we understand (DO,
//! cookies, Client Subnet)? If so, turn the frame around into the answer
//! and `XDP_TX` it.
//! Everything else, and anything we are not sure of, leaves with `XDP_PASS`
//! exactly as it came in, for the daemon to answer.
//!
//! The program is laid out as the protocol is: `packet` finds the UDP payload,
//! `query` checks it is a question we can answer and builds the lookup key,
//! `answer` writes the reply. Every packet lands in exactly one counter.
// Built for the host too (by `cargo clippy --workspace`), where it is an
// ordinary program with std, so the lints see the kernel code.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

mod answer;
mod guard;
mod hot;
mod packet;
mod query;
mod scratch;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};
use aya_log_ebpf::info;
use dns_common::{BRANCH_SLOTS, COUNTER_COUNT, Counter};

/// The UDP port answered on, host order. Userspace sets it at load time.
#[unsafe(no_mangle)]
static DNS_PORT: u16 = 53;

/// The EDNS UDP payload size this server advertises and accepts, host order.
#[unsafe(no_mangle)]
static EDNS_PAYLOAD: u16 = 1232;

/// Nonzero with `--xdp-log`. Userspace sets it at load time.
#[unsafe(no_mangle)]
static XDP_LOG: u16 = 0;

/// The bits of the name digest used as the map key: all of them, except in
/// tests that force names to collide.
#[unsafe(no_mangle)]
static DIGEST_MASK: u64 = u64::MAX;

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

#[map]
static BRANCH_ANSWERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(BRANCH_SLOTS, 0);

/// Counts an answer for the policy branch in `slot` (see `HotSet::branches`);
/// slot 0, answers that belong to no policy, is not counted.
#[inline(always)]
fn count_branch(slot: u16) {
    if slot == 0 {
        return;
    }
    if let Some(counter) = BRANCH_ANSWERS.get_ptr_mut(u32::from(slot)) {
        // SAFETY: as for `COUNTERS` below: this CPU's own slot.
        unsafe { *counter += 1 };
    }
}

#[xdp]
pub fn dnslb(ctx: XdpContext) -> u32 {
    // `--xdp-log`: userspace sets this global (and aya-log's level) at
    // load time. Both are read-only data, so with logging off the verifier
    // knows these branches are dead and removes them: the program then
    // costs what it costs without logging.
    let logging = config(&XDP_LOG) != 0;
    if logging && let Some(scratch) = scratch::get() {
        scratch.log_name_len = 0;
        scratch.log_selection = u8::MAX;
    }
    let outcome = match answer::respond(&ctx) {
        Ok(sent) => sent,
        Err(reason) => reason,
    };
    if logging && let Some(scratch) = scratch::get() {
        let reason = match outcome {
            Counter::Answered => "answered",
            Counter::RateSlipped => "rate limited, truncated",
            Counter::RateDropped => "rate limited, dropped",
            Counter::DropResponse => "a response, dropped",
            other => other.pass_reason().unwrap_or("passed"),
        };
        info!(
            &ctx,
            "{}: name {} bytes, selection {}", reason, scratch.log_name_len, scratch.log_selection
        );
    }
    if let Some(counter) = COUNTERS.get_ptr_mut(outcome as u32) {
        // SAFETY: the pointer is to this CPU's slot of a per-CPU array, which
        // nothing else writes while this program runs on this CPU.
        unsafe { *counter += 1 };
    }
    match outcome {
        Counter::Answered | Counter::RateSlipped => xdp_action::XDP_TX,
        Counter::RateDropped | Counter::DropResponse => xdp_action::XDP_DROP,
        _ => xdp_action::XDP_PASS,
    }
}

/// Passes every frame. Attached to the far end of a veth pair, it makes the
/// kernel deliver the frames our program sends back with `XDP_TX`.
#[xdp]
pub fn dnslb_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Reads a global that userspace rewrites in `.rodata` before loading. The
/// volatile read stops the compiler from folding in the default value.
#[inline(always)]
fn config(global: &'static u16) -> u16 {
    // SAFETY: a plain read of a valid, aligned, immutable static.
    unsafe { core::ptr::read_volatile(global) }
}

/// As [`config`], for a 64-bit global.
#[inline(always)]
fn config_u64(global: &'static u64) -> u64 {
    // SAFETY: as for `config`.
    unsafe { core::ptr::read_volatile(global) }
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable: the verifier rejects any program with a reachable loop
    // like this one, so a load succeeding proves no panic path survives.
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!(
        "dns-ebpf is an XDP program: dns-userspace's build script compiles it for bpfel-unknown-none"
    );
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
