//! Per-CPU working memory. The BPF stack is 512 bytes, too small for a copy
//! of the query, a 256-byte lookup key and the answer being built, so they
//! live in a one-slot per-CPU array instead.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use dns_common::{NAME_CLASSES, name_class};

/// The DNS message is copied here; queries we answer are far shorter.
pub const MSG_LEN: usize = 512;
const MSG_MASK: usize = MSG_LEN - 1;
/// The answer section (and OPT record) is built here before it is stored.
pub const OUT_LEN: usize = 512;
const OUT_MASK: usize = OUT_LEN - 1;

#[repr(C)]
pub struct Scratch {
    /// Lookup key for the query name; first, so it is 8-byte aligned.
    pub key: [u8; 256],
    /// Start of the next round-robin rotation on this CPU.
    pub rotation: u32,
    msg: [u8; MSG_LEN],
    out: [u8; OUT_LEN],
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

impl Scratch {
    /// Byte `i` of the copied message. The mask keeps the access inside the
    /// buffer for the verifier; callers check `i` against the copied length.
    #[inline(always)]
    pub fn msg(&self, i: usize) -> u8 {
        // SAFETY: `i & MSG_MASK < MSG_LEN`.
        unsafe { *self.msg.get_unchecked(i & MSG_MASK) }
    }

    #[inline(always)]
    pub fn msg_u16(&self, i: usize) -> u16 {
        u16::from_be_bytes([self.msg(i), self.msg(i + 1)])
    }

    pub fn msg_ptr(&mut self) -> *mut u8 {
        self.msg.as_mut_ptr()
    }

    #[inline(always)]
    pub fn set_out(&mut self, i: usize, byte: u8) {
        // SAFETY: `i & OUT_MASK < OUT_LEN`.
        unsafe { *self.out.get_unchecked_mut(i & OUT_MASK) = byte }
    }

    pub fn out_ptr(&mut self) -> *mut u8 {
        self.out.as_mut_ptr()
    }

    /// Zeroes the key from `name_len` to the end of its size class, as the
    /// map keys are padded: a masked store for the word the name ends in,
    /// then whole words.
    #[inline(always)]
    pub fn pad_key(&mut self, name_len: usize) {
        const WORDS: usize = 256 / 8;
        let words = self.key.as_mut_ptr() as *mut u64;
        let class_words = NAME_CLASSES[name_class(name_len)] / 8;
        let last = (name_len / 8) & (WORDS - 1);
        // Little-endian: the low bytes of a word come first in memory.
        let keep = (1u64 << ((name_len % 8) * 8)) - 1;
        // SAFETY: every index is masked below WORDS; `key` is 8-byte
        // aligned as the first field of a map value.
        unsafe {
            *words.add(last) &= keep;
            for i in 1..WORDS {
                let word = last + i;
                if word >= class_words {
                    break;
                }
                *words.add(word & (WORDS - 1)) = 0;
            }
        }
    }
}
