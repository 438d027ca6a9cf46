//! Per-CPU working memory. The BPF stack is 512 bytes, too small for a copy
//! of the query, the lowercased name and the answer being built, so they
//! live in a one-slot per-CPU array instead.
//!
//! The layout is chosen for word access: the name, the query name in the
//! copied message, and the answer records all start on 8-byte boundaries,
//! so names are lowercased, hashed and compared eight bytes at a time.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use dns_common::{DIGEST_SEED, MAX_NAME_LEN, digest_step};

use crate::{packet::Datagram, query::Question};

/// The DNS message is copied here; queries we answer are far shorter.
pub const MSG_LEN: usize = 512;
const MSG_MASK: usize = MSG_LEN - 1;
/// Where the message starts in `msg`: 4 bytes in, so that the query name
/// (12 bytes into the message) is 8-byte aligned.
const MSG_START: usize = 4;
/// The answer section (and OPT record) is built here before it is stored:
/// up to 16 AAAA records, an RSA signature and the OPT record.
pub const OUT_LEN: usize = 1024;
const OUT_MASK: usize = OUT_LEN - 1;
const NAME_WORDS: usize = 256 / 8;

#[repr(C)]
pub struct Scratch {
    /// The query name, lowercased, zero past its end, as 8-byte words.
    pub name: [u64; NAME_WORDS],
    /// The message, with slack so that masked word reads near the end stay
    /// inside the buffer.
    msg: [u64; (MSG_START + MSG_LEN + 16) / 8 + 1],
    /// The answer, with the same kind of slack for masked sizes.
    out: [u64; (2 * OUT_LEN + 16) / 8],
    /// Start of the next round-robin rotation on this CPU.
    pub rotation: u32,
    /// For `--xdp-log`: the query name's length and the selection of the
    /// name's records, as this packet's answer path found them (0 and 255
    /// when it did not get that far).
    pub log_name_len: u16,
    pub log_selection: u8,
    /// See [`Scratch::opaque`].
    spill: u64,
}

/// What parsing found, as the answer reads it: see [`launder`].
pub struct Parsed {
    pub question: Question,
    pub datagram: Datagram,
}

#[map]
static PARSED: PerCpuArray<Parsed> = PerCpuArray::with_max_entries(1, 0);

/// Stores what parsing found in a per-CPU map and returns it from there.
/// Values read from a map are unknown to the verifier, so every way
/// through the parsers (VLAN or not, IPv4 or IPv6, each mix of EDNS
/// options) leaves it in the same state, and it verifies what follows once
/// instead of once per way. What follows bounds every value it uses, as it
/// must for a map read.
#[inline(always)]
pub fn launder(question: Question, datagram: Datagram) -> Option<&'static Parsed> {
    let slot = PARSED.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot, used by one program run at a time and only
    // here; the writes complete before the shared reference is made.
    unsafe {
        core::ptr::write_volatile(&raw mut (*slot).question, question);
        core::ptr::write_volatile(&raw mut (*slot).datagram, datagram);
        // Opaque, so the compiler reloads the fields instead of reusing
        // the values it stored (which the verifier would still know).
        Some(&*core::hint::black_box(slot))
    }
}

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// This CPU's scratch area. Only `None` if the map is broken.
#[inline(always)]
pub fn get() -> Option<&'static mut Scratch> {
    let slot = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU slot, used by one program invocation at a time on this
    // CPU (XDP runs with preemption disabled), and never aliased here.
    Some(unsafe { &mut *slot })
}

/// ASCII-lowercases eight bytes at once. Bytes below 'A' (label lengths
/// among them, which are at most 63) and non-ASCII bytes are left alone.
#[inline(always)]
fn lowercase8(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let low7 = x & !HIGH;
    // Per byte, no carries: the high bit says "at least 'A'", "above 'Z'".
    let at_least_a = low7 + ONES * (0x80 - b'A' as u64);
    let above_z = low7 + ONES * (0x7f - b'Z' as u64);
    let upper = at_least_a & !above_z & !x & HIGH;
    x | (upper >> 2)
}

impl Scratch {
    /// `value`, passed through map memory so that the verifier sees an
    /// unknown number with no tie to `value`. A loop that stops at the
    /// opaque copy does not teach the verifier the exact count, which it
    /// would otherwise carry into (and multiply) everything after the loop.
    #[inline(always)]
    pub fn opaque(&mut self, value: usize) -> usize {
        // SAFETY: a field of this exclusive reference.
        unsafe {
            core::ptr::write_volatile(&mut self.spill, value as u64);
            core::ptr::read_volatile(&self.spill) as usize
        }
    }

    /// Byte `i` of the copied message. The mask keeps the access inside the
    /// buffer for the verifier; callers check `i` against the copied length.
    #[inline(always)]
    pub fn msg(&self, i: usize) -> u8 {
        let bytes = self.msg.as_ptr() as *const u8;
        // SAFETY: `(i & MSG_MASK) + MSG_START < MSG_LEN + 4`, inside `msg`.
        unsafe { *bytes.add((i & MSG_MASK) + MSG_START) }
    }

    #[inline(always)]
    pub fn msg_u16(&self, i: usize) -> u16 {
        u16::from_be_bytes([self.msg(i), self.msg(i + 1)])
    }

    /// Eight message bytes from `i`, as they lie in memory (little-endian).
    #[inline(always)]
    pub fn msg_u64(&self, i: usize) -> u64 {
        let bytes = self.msg.as_ptr() as *const u8;
        // SAFETY: the masked start is below MSG_START + MSG_LEN and `msg`
        // has 16 bytes of slack past that, so all eight bytes are inside.
        unsafe { (bytes.add((i & MSG_MASK) + MSG_START) as *const u64).read_unaligned() }
    }

    /// Where the helper copies the message to.
    pub fn msg_ptr(&mut self) -> *mut u8 {
        // SAFETY: MSG_START is inside the buffer.
        unsafe { (self.msg.as_mut_ptr() as *mut u8).add(MSG_START) }
    }

    /// Zeroes the four bytes from `len`, so a checksum over the first `len`
    /// bytes rounded up to whole 32-bit words sees zero padding.
    #[inline(always)]
    pub fn pad_msg(&mut self, len: usize) {
        let bytes = self.msg.as_mut_ptr() as *mut u8;
        // SAFETY: as for `msg_u64`, with four bytes instead of eight.
        unsafe { (bytes.add((len & MSG_MASK) + MSG_START) as *mut u32).write_unaligned(0) }
    }

    /// Copies the `name_len`-byte query name (at message offset 12, checked
    /// by the caller) into `name`, lowercased and zero past its end, and
    /// returns its digest (`dns_common::HotName::digest`).
    #[inline(always)]
    pub fn read_name(&mut self, name_len: usize) -> u64 {
        // The name starts at byte MSG_START + 12 = 16 of `msg`: word 2.
        const NAME_WORD: usize = (MSG_START + 12) / 8;
        let words = name_len.div_ceil(8);
        // Little-endian: the low bytes of a word come first in memory; the
        // last word keeps the bytes that are still name.
        let tail = name_len % 8;
        let last_mask = if tail == 0 {
            u64::MAX
        } else {
            (1u64 << (tail * 8)) - 1
        };
        let mut digest = DIGEST_SEED;
        for i in 0..MAX_NAME_LEN.div_ceil(8) {
            if i >= words {
                break;
            }
            let mask = if i + 1 == words { last_mask } else { u64::MAX };
            // The name ends by message byte 12 + 255: word 2 + 32 at most,
            // inside `msg`.
            let word = lowercase8(self.msg[(NAME_WORD + i) & 63]) & mask;
            self.name[i & (NAME_WORDS - 1)] = word;
            digest = digest_step(digest, word);
        }
        digest_step(digest, name_len as u64)
    }

    /// Word `i` of the lowercased name.
    #[inline(always)]
    pub fn name_word(&self, i: usize) -> u64 {
        self.name[i & (NAME_WORDS - 1)]
    }

    /// Stores one 32-bit word (bytes as they lie in memory) of the answer
    /// section at word index `i`.
    #[inline(always)]
    pub fn set_out_u32(&mut self, i: usize, word: u32) {
        let words = self.out.as_mut_ptr() as *mut u32;
        // SAFETY: `i & (OUT_LEN / 4 - 1)` is below OUT_LEN / 4.
        unsafe { *words.add(i & (OUT_LEN / 4 - 1)) = word }
    }

    /// Stores eight bytes of the answer section at byte offset `i`, any
    /// alignment.
    #[inline(always)]
    pub fn set_out_u64(&mut self, i: usize, word: u64) {
        let bytes = self.out.as_mut_ptr() as *mut u8;
        // SAFETY: the masked offset is below OUT_LEN and `out` has 16 bytes
        // of slack past OUT_LEN.
        unsafe { (bytes.add(i & OUT_MASK) as *mut u64).write_unaligned(word) }
    }

    #[inline(always)]
    pub fn set_out(&mut self, i: usize, byte: u8) {
        let bytes = self.out.as_mut_ptr() as *mut u8;
        // SAFETY: `i & OUT_MASK < OUT_LEN`.
        unsafe { *bytes.add(i & OUT_MASK) = byte }
    }

    pub fn out_ptr(&mut self) -> *mut u8 {
        self.out.as_mut_ptr() as *mut u8
    }
}
