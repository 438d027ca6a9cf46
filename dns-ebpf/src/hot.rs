//! The hot names: one hash map per name size class (see
//! `dns_common::NAME_CLASSES`), so a short name costs a short key; and the
//! client networks of names whose answer depends on who asks.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{HashMap, LpmTrie, lpm_trie::Key},
};
use dns_common::{CLIENT_NET_SERVICE_BITS, ClientNet, HotA, NameKey, Selection, name_class};

/// Userspace sets the real capacity at load time; entries are allocated as
/// they are added, so four classes cost no more than the names they hold.
const DEFAULT_CAPACITY: u32 = 65536;

#[map]
static HOT_A_32: HashMap<NameKey<32>, HotA> =
    HashMap::with_max_entries(DEFAULT_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
static HOT_A_64: HashMap<NameKey<64>, HotA> =
    HashMap::with_max_entries(DEFAULT_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
static HOT_A_128: HashMap<NameKey<128>, HotA> =
    HashMap::with_max_entries(DEFAULT_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
static HOT_A_256: HashMap<NameKey<256>, HotA> =
    HashMap::with_max_entries(DEFAULT_CAPACITY, BPF_F_NO_PREALLOC);

/// Userspace writes, under each generation of a client-dependent service,
/// a prefix for every client network its policy tells apart plus a
/// zero-length one for everyone else; the longest match is the answer.
#[map]
static CLIENT_NETS: LpmTrie<ClientNet, HotA> =
    LpmTrie::with_max_entries(DEFAULT_CAPACITY, BPF_F_NO_PREALLOC);

/// The answer material for a client at `source` (IPv4, network order):
/// `value` itself, or for a client-dependent name the value of the client's
/// network. `None` when no network matches: the daemon answers then.
#[inline(always)]
pub fn for_client(value: &'static HotA, source: [u8; 4]) -> Option<&'static HotA> {
    if value.selection != Selection::ByClient as u8 {
        return Some(value);
    }
    let key = Key::new(
        CLIENT_NET_SERVICE_BITS + 32,
        ClientNet {
            service: value.service.to_be_bytes(),
            addr: source,
        },
    );
    let found = CLIENT_NETS.get(&key)?;
    // Userspace never nests these; refusing to is what keeps this one step.
    (found.selection != Selection::ByClient as u8).then_some(found)
}

/// The A answer for the `len`-byte name in `key`, which must be zero past
/// `len` up to the end of its class.
#[inline(always)]
// Keys go by reference on purpose: by value would copy up to 256 bytes onto
// the 512-byte BPF stack.
#[allow(clippy::needless_borrows_for_generic_args)]
pub fn lookup_a(key: &[u8; 256], len: usize) -> Option<&'static HotA> {
    let key = key.as_ptr();
    // SAFETY: every `NameKey<N>` is an `N`-byte array (N <= 256) with
    // alignment 1, so each cast views a prefix of the 256-byte buffer; the
    // maps only read the key.
    unsafe {
        match name_class(len) {
            0 => HOT_A_32.get(&*(key as *const NameKey<32>)),
            1 => HOT_A_64.get(&*(key as *const NameKey<64>)),
            2 => HOT_A_128.get(&*(key as *const NameKey<128>)),
            _ => HOT_A_256.get(&*(key as *const NameKey<256>)),
        }
    }
}
