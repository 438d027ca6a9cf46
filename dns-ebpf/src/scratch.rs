//! Per-CPU working memory. The BPF stack is 512 bytes, too small for a copy
//! of the query, a 256-byte lookup key and the answer being built, so they
//! live in a one-slot per-CPU array instead.
//!
//! The layout is chosen for word access: the key, the query name in the
//! copied message, and the answer records all start on 8-byte boundaries,
//! so names are lowercased and records written eight bytes at a time.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use dns_common::{MAX_NAME_LEN, NAME_CLASSES, name_class};

/// The DNS message is copied here; queries we answer are far shorter.
pub const MSG_LEN: usize = 512;
const MSG_MASK: usize = MSG_LEN - 1;
/// Where the message starts in `msg`: 4 bytes in, so that the query name
/// (12 bytes into the message) is 8-byte aligned.
const MSG_START: usize = 4;
/// The answer section (and OPT record) is built here before it is stored.
pub const OUT_LEN: usize = 512;
const OUT_MASK: usize = OUT_LEN - 1;
const KEY_WORDS: usize = 256 / 8;

#[repr(C)]
pub struct Scratch {
    /// Lookup key for the query name.
    pub key: [u64; KEY_WORDS],
    msg: [u64; (MSG_LEN + 8) / 8],
    out: [u64; OUT_LEN / 8],
    /// Start of the next round-robin rotation on this CPU.
    pub rotation: u32,
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
    /// Byte `i` of the copied message. The mask keeps the access inside the
    /// buffer for the verifier; callers check `i` against the copied length.
    #[inline(always)]
    pub fn msg(&self, i: usize) -> u8 {
        let bytes = self.msg.as_ptr() as *const u8;
        // SAFETY: `(i & MSG_MASK) + MSG_START < MSG_LEN + 8`.
        unsafe { *bytes.add((i & MSG_MASK) + MSG_START) }
    }

    #[inline(always)]
    pub fn msg_u16(&self, i: usize) -> u16 {
        u16::from_be_bytes([self.msg(i), self.msg(i + 1)])
    }

    /// Where the helper copies the message to.
    pub fn msg_ptr(&mut self) -> *mut u8 {
        // SAFETY: MSG_START is inside the buffer.
        unsafe { (self.msg.as_mut_ptr() as *mut u8).add(MSG_START) }
    }

    /// Copies the `name_len`-byte query name (at message offset 12, checked
    /// by the caller) into the key, lowercased, zero-padded to the end of
    /// its size class as the map keys are.
    #[inline(always)]
    pub fn set_key(&mut self, name_len: usize) {
        // The name starts at byte MSG_START + 12 = 16 of `msg`: word 2.
        const NAME_WORD: usize = (MSG_START + 12) / 8;
        let words = name_len.div_ceil(8);
        for i in 0..MAX_NAME_LEN.div_ceil(8) {
            if i >= words {
                break;
            }
            // The name ends by message byte 12 + 255: word 2 + 32 at most,
            // so masking to 64 words keeps every index in the 65.
            self.key[i & (KEY_WORDS - 1)] = lowercase8(self.msg[(NAME_WORD + i) & 63]);
        }
        self.pad_key(name_len);
    }

    /// Zeroes the key from `name_len` to the end of its size class: a
    /// masked store for the word the name ends in, then whole words.
    #[inline(always)]
    fn pad_key(&mut self, name_len: usize) {
        let class_words = NAME_CLASSES[name_class(name_len)] / 8;
        let last = name_len / 8;
        // Little-endian: the low bytes of a word come first in memory.
        let keep = (1u64 << ((name_len % 8) * 8)) - 1;
        self.key[last & (KEY_WORDS - 1)] &= keep;
        for i in 1..KEY_WORDS {
            let word = last + i;
            if word >= class_words {
                break;
            }
            self.key[word & (KEY_WORDS - 1)] = 0;
        }
    }

    /// The key as bytes, for the map lookup.
    pub fn key_bytes(&self) -> &[u8; 256] {
        // SAFETY: same size, and u8 has no alignment requirement.
        unsafe { &*(self.key.as_ptr() as *const [u8; 256]) }
    }

    /// Stores one answer record as two words at record index `record`.
    #[inline(always)]
    pub fn set_record(&mut self, record: usize, head: u64, tail: u64) {
        let at = (record * 2) & (OUT_LEN / 8 - 1);
        self.out[at] = head;
        self.out[(at + 1) & (OUT_LEN / 8 - 1)] = tail;
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
