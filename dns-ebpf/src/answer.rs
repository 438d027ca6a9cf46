//! Building the answer in place: the query's header and question stay, the
//! answer records and an OPT record follow, and the frame is turned around.

use aya_ebpf::{
    helpers::{bpf_get_prandom_u32, bpf_xdp_adjust_tail, bpf_xdp_load_bytes, bpf_xdp_store_bytes},
    programs::XdpContext,
};
use dns_common::{Counter, HotA, MAX_ENDPOINTS, Selection};

use crate::{
    EDNS_PAYLOAD, config, hot,
    packet::{self, UDP_LEN},
    query::{self, HEADER_LEN, OPT_LEN},
    scratch::{self, MSG_LEN, Scratch},
};

/// An A record pointing back at the question name: pointer to offset 12,
/// TYPE A, CLASS IN, then TTL, RDLENGTH 4 and the address.
const RECORD_LEN: usize = 16;
const ENDPOINT_MASK: usize = MAX_ENDPOINTS - 1;

/// Answers the frame in place, or says why it passes. Nothing in the frame
/// changes unless this returns `Ok`.
#[inline(always)]
pub fn respond(ctx: &XdpContext) -> Result<(), Counter> {
    let datagram = packet::find_datagram(ctx)?;
    let scratch = scratch::get().ok_or(Counter::PassMalformed)?;

    // Opaque to the optimiser, so that the bounds check below is made on
    // the very register handed to the helper, which is what the verifier
    // needs to see (otherwise LLVM checks `udp_len > 520` instead).
    let len = core::hint::black_box(datagram.payload_len);
    if len == 0 || len > MSG_LEN {
        // Shorter than a header, or longer than any query we answer.
        return Err(if len == 0 {
            Counter::PassMalformed
        } else {
            Counter::PassUnsupported
        });
    }
    // SAFETY: `msg_ptr` points to MSG_LEN writable bytes and 0 < len <= MSG_LEN.
    let loaded = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            datagram.payload() as u32,
            scratch.msg_ptr() as *mut _,
            len as u32,
        )
    };
    if loaded != 0 {
        return Err(Counter::PassMalformed);
    }

    let server_payload = config(&EDNS_PAYLOAD);
    let question = query::parse(scratch, len, server_payload)?;
    let name = hot::lookup_a(scratch.key_bytes(), question.name_len).ok_or(Counter::PassNotHot)?;
    let rrset = hot::for_client(name, datagram.source).ok_or(Counter::PassNotHot)?;

    let answers = rrset.answers as usize;
    let endpoints = rrset.endpoints as usize;
    if endpoints == 0 {
        // Userspace holds this answer (a policy the kernel cannot draw).
        return Err(Counter::PassNotHot);
    }
    if answers == 0 || answers > endpoints || endpoints > MAX_ENDPOINTS {
        return Err(Counter::PassMalformed);
    }
    let section_len = answers * RECORD_LEN + if question.edns { OPT_LEN } else { 0 };
    let reply_len = question.end + section_len;
    if reply_len > question.payload_limit {
        return Err(Counter::PassTooBig);
    }

    let first = first_endpoint(rrset, scratch, endpoints);
    // LLVM knows `first` < 16 and would drop the mask; the verifier does
    // not know it (it cannot bound a remainder), so the mask must stay.
    let slot = core::hint::black_box(first) & ENDPOINT_MASK;
    crate::count_branch(rrset.branches[slot]);
    write_records(scratch, rrset, first, answers, endpoints);
    if question.edns {
        write_opt(scratch, answers * RECORD_LEN, server_payload);
    }

    let frame_len = ctx.data_end() - ctx.data();
    let new_frame_len = datagram.payload() + reply_len;
    let grow = new_frame_len as i32 - frame_len as i32;
    // SAFETY: plain helper call on our own context.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, grow) } != 0 {
        return Err(Counter::PassTooBig);
    }
    // Resizing invalidates every packet pointer: find the headers again.
    // These checks cannot fail (the frame only grew past them), but if they
    // did, shrinking back restores the frame exactly as it came in. The
    // verifier needs each pointer checked on its own; `black_box` stops LLVM
    // from dropping the first two as implied by the third.
    use core::hint::black_box;
    let headers = (
        packet::bytes_at(ctx, black_box(0), 14),
        packet::bytes_at(ctx, black_box(datagram.l3), 20),
        packet::bytes_at(ctx, datagram.l4, UDP_LEN + HEADER_LEN),
    );
    let (Some(eth), Some(ip), Some(udp)) = headers else {
        return Err(undo_grow(ctx, grow));
    };
    // SAFETY: `out_ptr` holds at least `section_len` (<= 16 * 16 + 11) bytes
    // written above; the helper checks the frame bounds itself and writes
    // nothing on failure.
    let stored = unsafe {
        bpf_xdp_store_bytes(
            ctx.ctx,
            (datagram.payload() + question.end) as u32,
            scratch.out_ptr() as *mut _,
            section_len as u32,
        )
    };
    if stored != 0 {
        return Err(undo_grow(ctx, grow));
    }

    let dns = udp.wrapping_add(UDP_LEN);
    // SAFETY: `udp` was checked to cover the UDP and DNS headers.
    unsafe {
        // QR=1, AA=1, RD echoed; RA=0, AD=0, CD echoed, RCODE=NOERROR.
        *dns.add(2) = 0x84 | (question.flags[0] & 0x01);
        *dns.add(3) = question.flags[1] & 0x10;
        *dns.add(6) = 0;
        *dns.add(7) = answers as u8;
    }
    let ip_header_len = datagram.l4 - datagram.l3;
    packet::turn_around(eth, ip, udp, reply_len, ip_header_len);
    Ok(())
}

/// The endpoint the answer starts with: a weighted draw, or the next step
/// of this CPU's rotation.
#[inline(always)]
fn first_endpoint(rrset: &HotA, scratch: &mut Scratch, endpoints: usize) -> usize {
    let total_weight = rrset.total_weight;
    if rrset.selection == Selection::Weighted as u8 && total_weight != 0 {
        // SAFETY: helper without arguments.
        let draw = unsafe { bpf_get_prandom_u32() }
            .checked_rem(total_weight)
            .unwrap_or(0);
        // The chosen endpoint is the first whose cumulative weight exceeds
        // the draw. The bounds never decrease, so a four-step binary search
        // finds it; it also keeps the verifier at 16 states, where counting
        // 16 comparisons would give it one per outcome pattern.
        let mut chosen = 0;
        for step in [8, 4, 2, 1] {
            if draw >= u32::from(rrset.cumulative[(chosen + step - 1) & ENDPOINT_MASK]) {
                chosen += step;
            }
        }
        chosen & ENDPOINT_MASK
    } else {
        let rotation = scratch.rotation;
        scratch.rotation = rotation.wrapping_add(1);
        rotation.checked_rem(endpoints as u32).unwrap_or(0) as usize & ENDPOINT_MASK
    }
}

/// Writes `answers` records into the scratch output, starting with endpoint
/// `first` and wrapping around. A record is two words: pointer to the
/// question, TYPE A, CLASS IN and half the TTL; the rest of the TTL,
/// RDLENGTH 4 and the address.
#[inline(always)]
fn write_records(
    scratch: &mut Scratch,
    rrset: &HotA,
    first: usize,
    answers: usize,
    endpoints: usize,
) {
    let [t0, t1, t2, t3] = rrset.ttl;
    let head = u64::from_le_bytes([0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, t0, t1]);
    let tail_base = u64::from_le_bytes([t2, t3, 0x00, 0x04, 0, 0, 0, 0]);
    let mut endpoint = first;
    for record in 0..MAX_ENDPOINTS {
        if record >= answers {
            break;
        }
        let addr = u32::from_le_bytes(rrset.addrs[endpoint & ENDPOINT_MASK]);
        scratch.set_record(record, head, tail_base | (u64::from(addr) << 32));
        endpoint += 1;
        if endpoint >= endpoints {
            endpoint = 0;
        }
    }
}

/// Writes an OPT record: version 0, no flags, no options, our payload size.
#[inline(always)]
fn write_opt(scratch: &mut Scratch, at: usize, server_payload: u16) {
    let size = server_payload.to_be_bytes();
    let opt = [0, 0, 41, size[0], size[1], 0, 0, 0, 0, 0, 0];
    for (i, byte) in opt.iter().enumerate() {
        scratch.set_out(at + i, *byte);
    }
}

#[inline(always)]
fn undo_grow(ctx: &XdpContext, grow: i32) -> Counter {
    // SAFETY: plain helper call on our own context; shrinking by what we
    // grew cannot fail.
    unsafe { bpf_xdp_adjust_tail(ctx.ctx, -grow) };
    Counter::PassMalformed
}
