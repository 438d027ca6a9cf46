//! Signed answers from the kernel. BPF cannot sign, so the daemon signs
//! every RRset a hot value can answer with ahead of time (each variant:
//! each endpoint a weighted pick can draw, each window a partial rotation
//! can start), and writes the RRSIG records, encoded exactly as the
//! daemon appends them to its own answer, into a signature map. The
//! kernel copies them after the records it writes.
//!
//! A value's signatures are written under a set number no other value
//! ever had, before the value that names them; a new signing gets a new
//! set and the old one is removed after the value moved on. A frame sees
//! the old value with its signatures or the new one with its own.

/// Sizes of the signature maps' record buffers: one class for the usual
/// one or two ECDSA or Ed25519 RRSIGs, one for RSA's longer ones. Longer
/// signatures are not written: the kernel passes those DO queries.
pub const SIG_CLASSES: [usize; 2] = [256, 640];
// The kernel copies 32 bytes a turn.
const _: () = assert!(SIG_CLASSES[0].is_multiple_of(32) && SIG_CLASSES[1].is_multiple_of(32));

/// The index into [`SIG_CLASSES`] of the class holding `len` bytes of
/// RRSIG records, if any does.
pub const fn sig_class(len: usize) -> Option<usize> {
    if len <= SIG_CLASSES[0] {
        Some(0)
    } else if len <= SIG_CLASSES[1] {
        Some(1)
    } else {
        None
    }
}

/// A signature map key: the value's set, and the variant (first endpoint,
/// masked by [`super::HotSet::variant_mask`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SigKey {
    pub set: u64,
    pub variant: u32,
    pub _pad: u32,
}

impl SigKey {
    pub const fn new(set: u64, variant: u32) -> SigKey {
        SigKey {
            set,
            variant,
            _pad: 0,
        }
    }
}

/// The RRSIG records of one variant: `len` bytes of whole records, each
/// owned by a pointer to the question name, with the RRset's TTL, as they
/// go on the wire; zero past `len`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigValue<const L: usize> {
    /// `CLOCK_MONOTONIC_COARSE` (`bpf_ktime_get_coarse_ns`, the cheapest
    /// clock an answer can read) from which the kernel no longer sends
    /// these: the daemon would have signed the RRset again by then, and
    /// the signatures are still valid well past it. The daemon writes them
    /// all again when this clock and the wall clock drift apart (a suspend,
    /// a clock step).
    pub until_mono_ns: u64,
    pub len: u16,
    /// RRSIG records in `bytes`, for the answer count.
    pub records: u16,
    pub _pad: u32,
    pub bytes: [u8; L],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_hold_their_lengths() {
        let classes = [1, 256, 257, 640, 641].map(sig_class);
        assert_eq!(classes, [Some(0), Some(0), Some(1), Some(1), None]);
    }
}
