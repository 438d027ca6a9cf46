//! Building the answer in place: the query's header and question stay, the
//! answer records and an OPT record (with the cookie and Client Subnet
//! options the query had) follow, and the frame is turned around.

use aya_ebpf::{
    helpers::{
        bpf_csum_diff, bpf_get_prandom_u32, bpf_ktime_get_boot_ns, bpf_ktime_get_coarse_ns,
        bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_load_bytes, bpf_xdp_store_bytes,
    },
    programs::XdpContext,
};
use dns_common::{
    Counter, HotSet, MAX_ENDPOINTS, SET_SIGNED, Selection, V4_MAPPED_BITS, V4_MAPPED_PREFIX,
    cookie::{CookieAddr, CookieSecrets},
    guard::{Guard, Verdict},
    signatures::SigValue,
    wire::{
        ANSWER_FLAGS0, CLIENT_COOKIE_LEN, COOKIE_OPTION_LEN, ECS_FAMILY_V4, ECS_FIXED_LEN,
        FLAGS0_RD, FLAGS0_TC, FLAGS1_CD, HEADER_LEN, OPT_DO, OPT_LEN, OPTION_COOKIE,
        OPTION_HEADER_LEN, POINTER_TO_QUESTION, RECORD_HEADER_LEN, SERVER_COOKIE_LEN, TYPE_OPT,
    },
};

use crate::{
    DIGEST_MASK, EDNS_PAYLOAD, XDP_LOG, config, config_u64, guard,
    hot::{self, A, Aaaa, RecordType, Signatures},
    packet::{self, Datagram, IPV6_LEN, UDP_LEN},
    query::{self, Question},
    scratch::{self, MSG_LEN, OUT_LEN, Scratch},
};

const ENDPOINT_MASK: usize = MAX_ENDPOINTS - 1;
/// The most bytes summed by one call of `bpf_csum_diff`: kernels before
/// 6.13 refuse more than 512.
const CSUM_CHUNK: usize = 512;
/// An address, family and prefix length: the most an ECS option carries.
const ECS_OPTION_MAX: usize = OPTION_HEADER_LEN + ECS_FIXED_LEN + 16;

/// Answers the frame in place (`Answered`, or `RateSlipped` for a
/// truncated answer), or says why it passes or is dropped. Nothing in the
/// frame changes unless this returns `Ok`.
#[inline(always)]
pub fn respond(ctx: &XdpContext) -> Result<Counter, Counter> {
    let us = guard::get().ok_or(Counter::PassNotOurs)?;
    let datagram = packet::find_datagram(ctx, us)?;
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
    let parsed = scratch::launder(question, datagram).ok_or(Counter::PassMalformed)?;
    let (question, datagram) = (&parsed.question, &parsed.datagram);
    let digest = question.digest & config_u64(&DIGEST_MASK);
    let reply = if question.aaaa {
        let set = hot::lookup::<16, Aaaa>(scratch, digest, question.name_len)
            .ok_or(Counter::PassNotHot)?;
        build::<16, Aaaa>(scratch, question, datagram, set, (server_payload, us))?
    } else {
        let set =
            hot::lookup::<4, A>(scratch, digest, question.name_len).ok_or(Counter::PassNotHot)?;
        build::<4, A>(scratch, question, datagram, set, (server_payload, us))?
    };
    let outcome = if reply.truncated {
        Counter::RateSlipped
    } else {
        Counter::Answered
    };
    send(ctx, scratch, question, datagram, reply)?;
    Ok(outcome)
}

/// The answer built in the scratch area's output: how long its sections
/// are, how many records it has, and whether it is a truncated one the
/// rate limit slipped through.
struct Reply {
    section_len: usize,
    answers: usize,
    truncated: bool,
}

/// Picks the records for the client and writes them, and the OPT record,
/// into the scratch output; over the client's rate, only the OPT record
/// (a truncated answer), or nothing (the query is dropped).
#[inline(always)]
fn build<const W: usize, T: RecordType<W>>(
    scratch: &mut Scratch,
    question: &Question,
    datagram: &Datagram,
    name_set: &'static HotSet<W>,
    (server_payload, us): (u16, &Guard),
) -> Result<Reply, Counter> {
    // For `--xdp-log` only; removed by the verifier otherwise.
    if config(&XDP_LOG) != 0 {
        scratch.log_name_len = question.name_len as u16;
        scratch.log_selection = name_set.selection;
    }
    let signing = question.dnssec_ok && name_set.flags & SET_SIGNED != 0;
    let set = if name_set.selection == Selection::ByClient as u8 {
        let (addr, prefix) = client_network(scratch, question, datagram);
        hot::for_client::<W, T>(name_set, addr, prefix).ok_or(Counter::PassNotHot)?
    } else {
        name_set
    };

    let answers = set.answers as usize;
    let endpoints = set.endpoints as usize;
    if endpoints == 0 {
        // Userspace holds this answer (a policy the kernel cannot draw).
        return Err(Counter::PassNotHot);
    }
    if answers == 0 || answers > endpoints || endpoints > MAX_ENDPOINTS {
        return Err(Counter::PassMalformed);
    }
    // Drawn before anything is written: a signed answer's signatures
    // depend on the RRset drawn. Opaque, so that the verifier follows one
    // state from here on rather than one per endpoint a draw can end at.
    let drawn = first_endpoint(set, scratch, endpoints);
    let first = scratch.opaque(drawn) & ENDPOINT_MASK;
    let records_len = answers * (RECORD_HEADER_LEN + W);
    // The signatures go straight into the output, after where the records
    // will be; only their length and count are carried on.
    let (signature_len, signature_records) = if signing {
        write_signatures_for(scratch, set, first, records_len)?
    } else {
        (0, 0)
    };
    let signed_len = records_len + signature_len;
    let cookie_len = if question.cookie_at != 0 {
        COOKIE_OPTION_LEN
    } else {
        0
    };
    // The Client Subnet comes back as it came, but for the scope. `query`
    // checked its length (at most 20); the mask says so to the verifier.
    let ecs_len = if question.ecs_at != 0 {
        OPTION_HEADER_LEN + (scratch.msg_u16(question.ecs_at - 2) as usize & 0x1f)
    } else {
        0
    };
    let opt_len = if question.edns {
        OPT_LEN + cookie_len + ecs_len
    } else {
        0
    };
    if question.end + signed_len + opt_len > question.payload_limit
        || signed_len + opt_len > OUT_LEN
    {
        return Err(Counter::PassTooBig);
    }

    let cookie = if cookie_len != 0 {
        let secrets = hot::cookie_secrets().ok_or(Counter::PassMalformed)?;
        Some(server_cookie(scratch, question, datagram, secrets))
    } else {
        None
    };
    let cookie_valid = matches!(cookie, Some(cookie) if cookie.echoed);
    let truncated = match guard::rate_limit(us, datagram, cookie_valid) {
        Verdict::Answer => false,
        Verdict::Slip => true,
        Verdict::Drop => return Err(Counter::RateDropped),
    };
    let (signed_len, answers) = if truncated {
        (0, 0)
    } else {
        // LLVM knows `first` < 16 and would drop the mask; the verifier
        // does not know it (it cannot bound a remainder), so the mask must
        // stay.
        let slot = core::hint::black_box(first) & ENDPOINT_MASK;
        crate::count_branch(set.branches[slot]);
        write_records::<W, T>(scratch, set, first, answers, endpoints);
        (signed_len, answers + signature_records)
    };
    let section_len = signed_len + opt_len;
    if question.edns {
        write_opt_head(
            scratch,
            signed_len,
            server_payload,
            question.dnssec_ok,
            cookie_len + ecs_len,
        );
        let options_at = signed_len + OPT_LEN;
        if let Some(cookie) = cookie {
            write_cookie(scratch, options_at, question, cookie);
        }
        if ecs_len != 0 {
            write_ecs(scratch, options_at + cookie_len, question.ecs_at, set.scope);
        }
    }
    // Zero padding past the answer, for the IPv6 checksum's whole words.
    scratch.set_out_u64(section_len, 0);
    Ok(Reply {
        section_len,
        answers,
        truncated,
    })
}

/// Writes the RRSIG records of the RRset starting at endpoint `first` of
/// `set` to `at` in the output; their length and count. A signed name's
/// DO query is answered with signatures the daemon made, still fresh, or
/// it passes to the daemon.
#[inline(always)]
fn write_signatures_for<const W: usize>(
    scratch: &mut Scratch,
    set: &HotSet<W>,
    first: usize,
    at: usize,
) -> Result<(usize, usize), Counter> {
    if set.signatures == 0 {
        return Err(Counter::PassUnsigned);
    }
    let variant = (first as u32) & u32::from(set.variant_mask);
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    match hot::signatures(set, variant, now) {
        Some(Signatures::Small(value)) => write_signatures(scratch, value, at),
        Some(Signatures::Large(value)) => write_signatures(scratch, value, at),
        None => Err(Counter::PassUnsigned),
    }
}

/// Copies one variant's RRSIG records to `at` in the output, 32 bytes a
/// turn (the bytes past their end are overwritten by what follows); their
/// length and count.
#[inline(always)]
fn write_signatures<const L: usize>(
    scratch: &mut Scratch,
    value: &SigValue<L>,
    at: usize,
) -> Result<(usize, usize), Counter> {
    let len = value.len as usize;
    if len > L {
        return Err(Counter::PassMalformed);
    }
    if at + len > OUT_LEN {
        return Err(Counter::PassTooBig);
    }
    let records = usize::from(value.records);
    // Opaque: one state for what follows, whichever class it came from.
    let len = scratch.opaque(len);
    // Four words a turn, the last turn's spare words (zero in the value,
    // and inside it: the classes are multiples of 32 bytes) landing in
    // the output's slack or under what follows.
    let words = value.bytes.as_ptr() as *const u64;
    for turn in 0..L / 32 {
        if turn * 32 >= len {
            break;
        }
        for word in 0..4 {
            let i = turn * 4 + word;
            // SAFETY: `i < L / 8`: inside the `L`-byte buffer, which starts
            // 16 bytes into a map value the kernel aligns to 8 bytes.
            let value = unsafe { words.add(i).read() };
            scratch.set_out_u64(at + i * 8, value);
        }
    }
    Ok((len, records))
}

/// The client network a client-dependent answer is chosen by: the Client
/// Subnet when the query has one, else the packet's source; as an IPv6
/// address (IPv4 mapped) with its known prefix length.
#[inline(always)]
fn client_network(scratch: &Scratch, question: &Question, datagram: &Datagram) -> ([u8; 16], u32) {
    if question.ecs_at == 0 {
        return (datagram.source, 128);
    }
    let at = question.ecs_at;
    let source = scratch.msg(at + 2) as usize;
    let mut addr = [0u8; 16];
    let (start, base) = if scratch.msg_u16(at) == ECS_FAMILY_V4 {
        addr[..12].copy_from_slice(&V4_MAPPED_PREFIX);
        (12, V4_MAPPED_BITS)
    } else {
        (0, 0)
    };
    // Validated in `query`: the address has exactly source/8 bytes
    // (rounded up), and no bits set past the prefix.
    let bytes = source.div_ceil(8);
    for i in 0..16 {
        if i >= bytes {
            break;
        }
        addr[(start + i) & 15] = scratch.msg(at + ECS_FIXED_LEN + i);
    }
    (addr, base + source as u32)
}

/// The endpoint the answer starts with: a weighted draw, or the next step
/// of this CPU's rotation.
#[inline(always)]
fn first_endpoint<const W: usize>(
    set: &HotSet<W>,
    scratch: &mut Scratch,
    endpoints: usize,
) -> usize {
    let total_weight = set.total_weight;
    if set.selection == Selection::Weighted as u8 && total_weight != 0 {
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
            if draw >= u32::from(set.cumulative[(chosen + step - 1) & ENDPOINT_MASK]) {
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
/// `first` and wrapping around, as 32-bit words: pointer to the question
/// and TYPE; CLASS IN and half the TTL; the rest of the TTL and RDLENGTH;
/// the address. Records are 16 (A) or 28 (AAAA) bytes, whole words.
/// Two straight runs (from `first` to the end, then from the start) rather
/// than one loop that wraps: a wrap inside the loop would have the verifier
/// follow every pair of start and count separately.
#[inline(always)]
fn write_records<const W: usize, T: RecordType<W>>(
    scratch: &mut Scratch,
    set: &HotSet<W>,
    first: usize,
    answers: usize,
    endpoints: usize,
) {
    let [t0, t1, t2, t3] = set.ttl;
    let [y0, y1] = T::TYPE_BYTES;
    let head = [
        u32::from_le_bytes([POINTER_TO_QUESTION[0], POINTER_TO_QUESTION[1], y0, y1]),
        u32::from_le_bytes([0x00, 0x01, t0, t1]),
        u32::from_le_bytes([t2, t3, 0x00, W as u8]),
    ];
    let to_end = endpoints - first;
    let (before_wrap, after_wrap) = if answers <= to_end {
        (answers, 0)
    } else {
        (to_end, answers - to_end)
    };
    write_run::<W>(scratch, set, &head, 0, first, before_wrap);
    write_run::<W>(scratch, set, &head, before_wrap, 0, after_wrap);
}

/// Writes `count` records from record index `record`, with the addresses
/// of endpoints `endpoint`, `endpoint + 1`, ...
#[inline(always)]
fn write_run<const W: usize>(
    scratch: &mut Scratch,
    set: &HotSet<W>,
    head: &[u32; 3],
    record: usize,
    endpoint: usize,
    count: usize,
) {
    let record_words = (RECORD_HEADER_LEN + W) / 4;
    let count = scratch.opaque(count);
    let record = scratch.opaque(record);
    for i in 0..MAX_ENDPOINTS {
        if i >= count {
            break;
        }
        let base = (record + i) * record_words;
        for (word, value) in head.iter().enumerate() {
            scratch.set_out_u32(base + word, *value);
        }
        // The mask must reach the verifier; `black_box` keeps LLVM from
        // dropping it as implied by the loop bounds.
        let index = core::hint::black_box(endpoint + i) & ENDPOINT_MASK;
        let addr = set.addrs[index].as_ptr() as *const u32;
        for word in 0..W / 4 {
            // SAFETY: word `word` of a `W`-byte address in the map value;
            // `HotSet` is 4-aligned and its addresses start at a multiple
            // of 4, so the read is aligned.
            let value = unsafe { addr.add(word).read() };
            scratch.set_out_u32(base + 3 + word, value);
        }
    }
}

/// Writes the OPT record's fixed part at `at`: version 0, our payload size,
/// DO as the query had it, `options_len` bytes of options to follow.
#[inline(always)]
fn write_opt_head(
    scratch: &mut Scratch,
    at: usize,
    server_payload: u16,
    dnssec_ok: bool,
    options_len: usize,
) {
    let [p0, p1] = server_payload.to_be_bytes();
    let [t0, t1] = TYPE_OPT.to_be_bytes();
    let flags = if dnssec_ok { OPT_DO } else { 0 };
    let [l0, l1] = (options_len as u16).to_be_bytes();
    scratch.set_out_u64(at, u64::from_le_bytes([0, t0, t1, p0, p1, 0, 0, flags]));
    scratch.set_out_u64(at + 8, u64::from_le_bytes([0, l0, l1, 0, 0, 0, 0, 0]));
}

/// The server cookie an answer carries, and whether it is the one the
/// query brought (valid, and young enough to echo).
#[derive(Clone, Copy)]
struct ServerCookie {
    words: [u64; 2],
    echoed: bool,
}

/// The server cookie `dns_common::cookie` answers the query's cookie with.
#[inline(always)]
fn server_cookie(
    scratch: &Scratch,
    question: &Question,
    datagram: &Datagram,
    secrets: &CookieSecrets,
) -> ServerCookie {
    let client = scratch.msg_u64(question.cookie_at);
    // The server cookie's words are read whatever the cookie's length (the
    // reads stay inside the message copy) and kept opaque, so that they are
    // in hand on every path. Read under a test of the length, they were
    // used under a second test of it that LLVM emitted, and the verifier,
    // which cannot carry "not 24" from one test to the next, followed a
    // path where they were never read and their stack slot held a pointer.
    let server_at = question.cookie_at + CLIENT_COOKIE_LEN;
    let words = core::hint::black_box([scratch.msg_u64(server_at), scratch.msg_u64(server_at + 8)]);
    let received = (question.cookie_len == CLIENT_COOKIE_LEN + SERVER_COOKIE_LEN).then_some(words);
    let s = datagram.source;
    let addr = if datagram.v6 {
        CookieAddr::V6(s)
    } else {
        CookieAddr::V4([s[12], s[13], s[14], s[15]])
    };
    // SAFETY: helper without arguments.
    let boot_ns = unsafe { bpf_ktime_get_boot_ns() };
    let now = (boot_ns.wrapping_add(secrets.clock_offset_ns) / 1_000_000_000) as u32;
    let reply = secrets.reply(now, client, received, addr);
    ServerCookie {
        words: reply,
        echoed: received == Some(reply),
    }
}

/// Writes the cookie option at `at`: the client cookie and the server
/// cookie.
#[inline(always)]
fn write_cookie(scratch: &mut Scratch, at: usize, question: &Question, cookie: ServerCookie) {
    let client = scratch.msg_u64(question.cookie_at);
    let [stamp, hash] = cookie.words;
    let [c0, c1] = OPTION_COOKIE.to_be_bytes();
    let header = u32::from_le_bytes([c0, c1, 0, (CLIENT_COOKIE_LEN + SERVER_COOKIE_LEN) as u8]);
    scratch.set_out_u64(at, u64::from(header));
    scratch.set_out_u64(at + OPTION_HEADER_LEN, client);
    scratch.set_out_u64(at + OPTION_HEADER_LEN + CLIENT_COOKIE_LEN, stamp);
    scratch.set_out_u64(at + OPTION_HEADER_LEN + CLIENT_COOKIE_LEN + 8, hash);
}

/// Copies the query's Client Subnet option (data at `ecs_at`) to `at`,
/// with the scope the answer was decided by.
#[inline(always)]
fn write_ecs(scratch: &mut Scratch, at: usize, ecs_at: usize, scope: u8) {
    let from = ecs_at - OPTION_HEADER_LEN;
    for i in 0..ECS_OPTION_MAX / 8 {
        let word = scratch.msg_u64(from + i * 8);
        scratch.set_out_u64(at + i * 8, word);
    }
    scratch.set_out(at + OPTION_HEADER_LEN + 3, scope);
}

/// Grows the frame to the answer, stores the sections, rewrites the header
/// and turns the frame around. `len` is the query's DNS length.
#[inline(always)]
fn send(
    ctx: &XdpContext,
    scratch: &mut Scratch,
    question: &Question,
    datagram: &Datagram,
    reply: Reply,
) -> Result<(), Counter> {
    let section_len = reply.section_len;
    let reply_len = question.end + section_len;
    let truncated = if reply.truncated { FLAGS0_TC } else { 0 };
    let flags = [
        ANSWER_FLAGS0 | truncated | (question.flags[0] & FLAGS0_RD),
        question.flags[1] & FLAGS1_CD,
    ];
    // Over IPv6 the UDP checksum is computed whole: the query's cannot be
    // trusted as a base, since a virtual interface (veth) hands the frame
    // over with the checksum left for offload to fill in.
    let dns = if datagram.v6 {
        let flag_words = (
            u16::from_be_bytes(question.flags),
            u16::from_be_bytes(flags),
        );
        dns_sum(
            scratch,
            question.end,
            section_len,
            flag_words,
            reply.answers as u16,
        )?
    } else {
        0
    };

    let frame_len = ctx.data_end() - ctx.data();
    let new_frame_len = datagram.payload() + reply_len;
    let grow = new_frame_len as i32 - frame_len as i32;
    let keep = datagram.payload() + question.end;
    // SAFETY: plain helper call on our own context.
    let growth = if unsafe { bpf_xdp_adjust_tail(ctx.ctx, grow) } == 0 {
        Growth::Tail
    } else {
        grow_at_head(ctx, scratch, keep, grow)?;
        Growth::Head
    };
    // Resizing invalidates every packet pointer: find the headers again.
    // These checks cannot fail (the frame only grew past them), but if they
    // did, shrinking back restores the frame exactly as it came in. The
    // verifier needs each pointer checked on its own; `black_box` stops LLVM
    // from dropping the first two as implied by the third.
    // The offsets come from the map `launder` put them in: the masks bound
    // them for the verifier (Ethernet and a VLAN tag end by 18, IPv4
    // options by 18 + 60) and change nothing.
    use core::hint::black_box;
    let headers = (
        packet::bytes_at(ctx, black_box(0), 14),
        packet::bytes_at(ctx, black_box(datagram.l3 & 0x1f), IPV6_LEN),
        packet::bytes_at(ctx, datagram.l4 & 0x7f, UDP_LEN + HEADER_LEN),
    );
    let (Some(eth), Some(ip), Some(udp)) = headers else {
        return Err(undo_grow(ctx, scratch, growth, keep, grow));
    };
    // A slip without EDNS has no sections at all: nothing to store.
    // SAFETY: `out_ptr` holds at least `section_len` bytes written above;
    // the helper checks the frame bounds itself and writes nothing on
    // failure.
    let stored = section_len == 0
        || unsafe {
            bpf_xdp_store_bytes(
                ctx.ctx,
                (datagram.payload() + question.end) as u32,
                scratch.out_ptr() as *mut _,
                (((section_len - 1) & (OUT_LEN * 2 - 1)) + 1) as u32,
            )
        } == 0;
    if !stored {
        return Err(undo_grow(ctx, scratch, growth, keep, grow));
    }

    let header = udp.wrapping_add(UDP_LEN);
    // SAFETY: `udp` was checked to cover the UDP and DNS headers.
    unsafe {
        *header.add(2) = flags[0];
        *header.add(3) = flags[1];
        *header.add(6) = 0;
        *header.add(7) = reply.answers as u8;
    }
    if datagram.v6 {
        let checksum = packet::checksum_v6(ip, udp, (UDP_LEN + reply_len) as u16, dns);
        packet::turn_around_v6(eth, ip, udp, reply_len, checksum);
    } else {
        let ip_header_len = datagram.l4 - datagram.l3;
        packet::turn_around(eth, ip, udp, reply_len, ip_header_len);
    }
    Ok(())
}

/// The one's-complement sum of the answer's DNS message, folded, in
/// big-endian words: the header and question from the message copy (with
/// the answer's flags word and answer count in place of the query's), the
/// sections from the output. Whole 32-bit words go to the helper; the
/// padding after each part is zero.
#[inline(always)]
fn dns_sum(
    scratch: &mut Scratch,
    question_end: usize,
    section_len: usize,
    flags: (u16, u16),
    answers: u16,
) -> Result<u16, Counter> {
    scratch.pad_msg(question_end);
    let head_len = (question_end + 3) & !3;
    let body_len = (section_len + 3) & !3;
    // The sections are summed in two parts of at most CSUM_CHUNK bytes,
    // the most the helper takes at once on older kernels. The masks
    // restate the bounds for the verifier: a question ends by 12 + 255 + 4
    // bytes, the sections by OUT_LEN.
    let first_len = body_len.min(CSUM_CHUNK) & (CSUM_CHUNK * 2 - 4);
    let rest_len = (body_len - first_len) & (CSUM_CHUNK * 2 - 4);
    let out = scratch.out_ptr();
    // SAFETY: all three buffers are in the scratch area, with the sizes
    // the masks allow inside them (the output holds 2 * OUT_LEN bytes).
    let (head, first, rest) = unsafe {
        (
            bpf_csum_diff(
                core::ptr::null_mut(),
                0,
                scratch.msg_ptr() as *mut u32,
                (head_len & 0x1fc) as u32,
                0,
            ),
            bpf_csum_diff(
                core::ptr::null_mut(),
                0,
                out as *mut u32,
                first_len as u32,
                0,
            ),
            bpf_csum_diff(
                core::ptr::null_mut(),
                0,
                out.add(CSUM_CHUNK) as *mut u32,
                rest_len as u32,
                0,
            ),
        )
    };
    if head < 0 || first < 0 || rest < 0 {
        return Err(Counter::PassMalformed);
    }
    // The helper sums 16-bit words as they lie in memory, little-endian:
    // byte-swapped against the checksum's big-endian words, unless the
    // bytes start at an odd offset, which swaps them back.
    let head = packet::fold(u64::from(head as u32)).swap_bytes();
    let body = packet::fold(u64::from(first as u32) + u64::from(rest as u32));
    let body = if question_end.is_multiple_of(2) {
        body.swap_bytes()
    } else {
        body
    };
    let sum = u64::from(head)
        + u64::from(!flags.0)
        + u64::from(flags.1)
        + u64::from(answers)
        + u64::from(body);
    Ok(packet::fold(sum))
}

/// Grows the frame by `grow` bytes in front, for when there is no room
/// after it (veth hands small frames over in buffers with little
/// tailroom, though with the usual 256 bytes of headroom), and moves the
/// first `keep` bytes (headers and question) to the new start. Either the
/// frame is grown and moved, or it is left exactly as it came.
#[inline(always)]
fn grow_at_head(
    ctx: &XdpContext,
    scratch: &mut Scratch,
    keep: usize,
    grow: i32,
) -> Result<(), Counter> {
    // Headers (at most 18 + 60 + 8 bytes) and a question (at most 271).
    let keep = keep & 0x1ff;
    if grow <= 0 || keep == 0 {
        return Err(Counter::PassTooBig);
    }
    // SAFETY: plain helper call on our own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -grow) } != 0 {
        return Err(Counter::PassTooBig);
    }
    // The message copy is no longer needed (the checksum was taken), so it
    // carries the bytes across.
    // SAFETY: `msg_ptr` points to MSG_LEN bytes and 0 < keep < 512; the
    // helpers check the frame bounds and write nothing on failure.
    let moved = unsafe {
        bpf_xdp_load_bytes(
            ctx.ctx,
            grow as u32,
            scratch.msg_ptr() as *mut _,
            keep as u32,
        ) == 0
            && bpf_xdp_store_bytes(ctx.ctx, 0, scratch.msg_ptr() as *mut _, keep as u32) == 0
    };
    if !moved {
        // SAFETY: as above; gives back exactly the headroom taken.
        unsafe { bpf_xdp_adjust_head(ctx.ctx, grow) };
        return Err(Counter::PassTooBig);
    }
    Ok(())
}

/// Which end of the frame the answer grew at.
#[derive(Clone, Copy)]
enum Growth {
    Tail,
    Head,
}

/// Gives the frame back exactly as it came after it was grown.
#[inline(always)]
fn undo_grow(
    ctx: &XdpContext,
    scratch: &mut Scratch,
    growth: Growth,
    keep: usize,
    grow: i32,
) -> Counter {
    // SAFETY: plain helper calls on our own context. Shrinking by what was
    // grown cannot fail; after growing at the head, the message copy still
    // holds the `keep` bytes that were moved, which go back where they were.
    unsafe {
        match growth {
            Growth::Tail => {
                bpf_xdp_adjust_tail(ctx.ctx, -grow);
            }
            Growth::Head => {
                // `grow_at_head` moved 1 to 511 bytes; the mask says so.
                let keep = (((keep - 1) & 0x1ff) + 1) as u32;
                bpf_xdp_store_bytes(ctx.ctx, grow as u32, scratch.msg_ptr() as *mut _, keep);
                bpf_xdp_adjust_head(ctx.ctx, grow);
            }
        }
    }
    Counter::PassMalformed
}
