//! The hot names: A and AAAA RRsets by name digest, one map per record type
//! and name size class (see `dns_common::NAME_CLASSES`), the name kept in
//! the value and compared; and the client networks of names whose answer
//! depends on who asks.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LpmTrie, lpm_trie::Key},
};
use dns_common::{
    CLIENT_NET_SERVICE_BITS, ClientNetKey, HotEntry, HotSet, NAME_CLASSES, Selection,
    cookie::CookieSecrets,
    signatures::{SIG_CLASSES, SigKey, SigValue},
};

use crate::scratch::Scratch;

/// Userspace sets the real capacity at load time; entries are allocated as
/// they are added, so the classes cost no more than the names they hold.
const DEFAULT_CAPACITY: u32 = 65536;
const SMALL: usize = NAME_CLASSES[0];
const LARGE: usize = NAME_CLASSES[1];

#[map]
static HOT_A_64: HashMap<u64, HotEntry<SMALL, 4>> =
    HashMap::with_max_entries(DEFAULT_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
static HOT_A_256: HashMap<u64, HotEntry<LARGE, 4>> =
    HashMap::with_max_entries(DEFAULT_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
static HOT_AAAA_64: HashMap<u64, HotEntry<SMALL, 16>> =
    HashMap::with_max_entries(DEFAULT_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
static HOT_AAAA_256: HashMap<u64, HotEntry<LARGE, 16>> =
    HashMap::with_max_entries(DEFAULT_CAPACITY, BPF_F_NO_PREALLOC);

/// Userspace writes, under each generation of a client-dependent service,
/// a prefix for every client network its policy tells apart plus a
/// default for each family; the longest match is the answer.
#[map]
static CLIENT_NETS_A: LpmTrie<ClientNetKey, HotSet<4>> =
    LpmTrie::with_max_entries(DEFAULT_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
static CLIENT_NETS_AAAA: LpmTrie<ClientNetKey, HotSet<16>> =
    LpmTrie::with_max_entries(DEFAULT_CAPACITY, BPF_F_NO_PREALLOC);

const SIGS_SMALL: usize = SIG_CLASSES[0];
const SIGS_LARGE: usize = SIG_CLASSES[1];

/// The RRSIG records of signed hot values, by set and variant.
#[map]
static SIGS_256: HashMap<SigKey, SigValue<SIGS_SMALL>> =
    HashMap::with_max_entries(DEFAULT_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
static SIGS_640: HashMap<SigKey, SigValue<SIGS_LARGE>> =
    HashMap::with_max_entries(DEFAULT_CAPACITY, BPF_F_NO_PREALLOC);

/// One variant's RRSIG records, in the map of its size class.
#[derive(Clone, Copy)]
pub enum Signatures {
    Small(&'static SigValue<SIGS_SMALL>),
    Large(&'static SigValue<SIGS_LARGE>),
}

/// The signatures of variant `variant` of `set`'s values, if the kernel
/// holds them and may still send them at `now` (coarse monotonic
/// nanoseconds).
#[inline(always)]
pub fn signatures<const W: usize>(set: &HotSet<W>, variant: u32, now: u64) -> Option<Signatures> {
    let key = SigKey::new(set.signatures, variant);
    // SAFETY: the maps only read the key.
    let found = if set.sig_class == 0 {
        Signatures::Small(unsafe { SIGS_256.get(key) }?)
    } else {
        Signatures::Large(unsafe { SIGS_640.get(key) }?)
    };
    let until = match found {
        Signatures::Small(value) => value.until_mono_ns,
        Signatures::Large(value) => value.until_mono_ns,
    };
    (now < until).then_some(found)
}

#[map]
static COOKIE_SECRETS: Array<CookieSecrets> = Array::with_max_entries(1, 0);

/// The cookie secrets and clock offset the daemon wrote.
#[inline(always)]
pub fn cookie_secrets() -> Option<&'static CookieSecrets> {
    COOKIE_SECRETS.get(0)
}

/// A record type the kernel answers: where its names and client networks
/// are kept.
pub trait RecordType<const W: usize> {
    /// RR TYPE on the wire, as the two bytes lie in memory.
    const TYPE_BYTES: [u8; 2];
    fn small() -> &'static HashMap<u64, HotEntry<SMALL, W>>;
    fn large() -> &'static HashMap<u64, HotEntry<LARGE, W>>;
    fn client_nets() -> &'static LpmTrie<ClientNetKey, HotSet<W>>;
}

pub struct A;
pub struct Aaaa;

impl RecordType<4> for A {
    const TYPE_BYTES: [u8; 2] = [0, 1];
    fn small() -> &'static HashMap<u64, HotEntry<SMALL, 4>> {
        &HOT_A_64
    }
    fn large() -> &'static HashMap<u64, HotEntry<LARGE, 4>> {
        &HOT_A_256
    }
    fn client_nets() -> &'static LpmTrie<ClientNetKey, HotSet<4>> {
        &CLIENT_NETS_A
    }
}

impl RecordType<16> for Aaaa {
    const TYPE_BYTES: [u8; 2] = [0, 28];
    fn small() -> &'static HashMap<u64, HotEntry<SMALL, 16>> {
        &HOT_AAAA_64
    }
    fn large() -> &'static HashMap<u64, HotEntry<LARGE, 16>> {
        &HOT_AAAA_256
    }
    fn client_nets() -> &'static LpmTrie<ClientNetKey, HotSet<16>> {
        &CLIENT_NETS_AAAA
    }
}

/// The RRset for the `len`-byte name in `scratch.name` with digest
/// `digest`, if the entry under that digest is this very name.
#[inline(always)]
pub fn lookup<const W: usize, T: RecordType<W>>(
    scratch: &Scratch,
    digest: u64,
    len: usize,
) -> Option<&'static HotSet<W>> {
    if len <= SMALL {
        // SAFETY: the map only reads the key.
        let entry = unsafe { T::small().get(digest) }?;
        same_name(&entry.name, scratch, len).then_some(&entry.set)
    } else {
        // SAFETY: as above.
        let entry = unsafe { T::large().get(digest) }?;
        same_name(&entry.name, scratch, len).then_some(&entry.set)
    }
}

/// Compares the stored name with the query's, word by word, over the
/// query's length. Both are well-formed names zero-padded past their end,
/// so equal words up to the query's last one mean equal names.
#[inline(always)]
fn same_name<const N: usize>(stored: &[u8; N], scratch: &Scratch, len: usize) -> bool {
    let words = stored.as_ptr() as *const u64;
    for i in 0..N / 8 {
        if i * 8 >= len {
            break;
        }
        // SAFETY: `i < N / 8`, inside the `N`-byte name at the start of a
        // map value, whose storage the kernel aligns to 8 bytes.
        if unsafe { words.add(i).read() } != scratch.name_word(i) {
            return false;
        }
    }
    true
}

/// The answer material for a client whose address (or Client Subnet) is
/// `addr` with `prefix` known bits (IPv4 mapped into IPv6): `set` itself,
/// or for a client-dependent name the value of the client's network.
/// `None` when no network matches: the daemon answers then.
#[inline(always)]
pub fn for_client<const W: usize, T: RecordType<W>>(
    set: &'static HotSet<W>,
    addr: [u8; 16],
    prefix: u32,
) -> Option<&'static HotSet<W>> {
    if set.selection != Selection::ByClient as u8 {
        return Some(set);
    }
    let key = Key::new(
        CLIENT_NET_SERVICE_BITS + prefix,
        ClientNetKey {
            service: set.service.to_be_bytes(),
            addr,
        },
    );
    let found = T::client_nets().get(&key)?;
    // Userspace never nests these; refusing to is what keeps this one step.
    (found.selection != Selection::ByClient as u8).then_some(found)
}
