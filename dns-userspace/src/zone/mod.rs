//! Zones: the authoritative data, loaded from RFC 1035 master files.
//!
//! A [`Zone`] is immutable once built; replacing a zone means building a new
//! one and swapping it into the [`Catalog`], so a bad file never disturbs
//! what is serving.

mod catalog;
pub mod dnssec;
mod entries;
mod generic;
mod load;
mod rrset;
pub mod serial;
pub mod wire;

use std::{collections::HashMap, sync::OnceLock};

use hickory_proto::{
    rr::{Name, RData, Record, RecordType, rdata::SOA},
    serialize::binary::BinEncodable,
};

pub use catalog::Catalog;
pub use load::{ZoneError, load_zone, parse_zone};
pub use rrset::{Rrset, additional_target, address_rdata, encode_rdata};
pub use wire::WireName;

/// One record written as a master-file entry with its owner (`owner [ttl]
/// [class] type data`, relative names below `origin`), as a key file holds
/// its DNSKEY; any type, the DNSSEC ones included.
pub fn read_record(entry: &str, origin: &Name) -> Result<generic::GenericRecord, String> {
    generic::parse(entry, None, origin, Some(0))
}

/// One name in the zone and its RRsets. A node without RRsets is an empty
/// non-terminal: it exists because names below it do.
#[derive(Clone, Debug, Default)]
pub struct Node {
    rrsets: Vec<Rrset>,
}

impl Node {
    pub fn rrset(&self, record_type: RecordType) -> Option<&Rrset> {
        self.rrsets
            .iter()
            .find(|set| set.record_type() == record_type)
    }

    pub fn rrsets(&self) -> &[Rrset] {
        &self.rrsets
    }
}

/// What the zone holds for a question.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// The RRset asked for.
    Answer(&'a Rrset),
    /// The name is an alias: the CNAME RRset.
    Alias(&'a Rrset),
    /// The name is below a zone cut: the cut's name and its NS RRset.
    Delegation(&'a WireName, &'a Rrset),
    /// The name exists, without data of that type.
    NoData,
    /// The name does not exist.
    NxDomain,
}

/// A wildcard's first label, `*`, on the wire.
const WILDCARD_LABEL: &[u8] = b"\x01*";

/// The wildcard name `*.encloser`, on the wire.
fn wildcard_below(encloser: &[u8]) -> Vec<u8> {
    [WILDCARD_LABEL, encloser].concat()
}

/// Nodes by lowercase wire name. aHash with per-process random keys: fast,
/// and still no table an attacker can flood with colliding names.
type Nodes = HashMap<WireName, Node, ahash::RandomState>;

#[derive(Debug)]
pub struct Zone {
    origin: WireName,
    origin_name: Name,
    nodes: Nodes,
    /// The SOA record of negative answers, pre-encoded on first use.
    negative_soa: OnceLock<Box<[u8]>>,
    /// Whether any name below the apex has NS records: without zone cuts,
    /// looking for a delegation is skipped.
    has_cuts: bool,
    /// Whether the zone has wildcard names: without them, a missing name
    /// is NXDOMAIN at once.
    has_wildcards: bool,
    /// Whether the zone holds DNSSEC records (a pre-signed zone): queries
    /// with DO for its names are the daemon's, which has the signatures.
    signed: bool,
    /// Whether dnslb signs it as it answers (`dnssec = "online"`).
    online: bool,
    /// Its NSEC or NSEC3 chain, in the order proofs search it; built on
    /// the first proof.
    denial: OnceLock<dnssec::DenialChain>,
    /// Its keys and signatures, summed up on first use.
    signing: OnceLock<dnssec::Signing>,
}

impl Zone {
    pub fn origin(&self) -> &WireName {
        &self.origin
    }

    pub fn origin_name(&self) -> &Name {
        &self.origin_name
    }

    /// Whether answers to DO queries carry signatures: the zone was
    /// signed elsewhere, or dnslb signs it. The kernel passes such queries
    /// on.
    pub fn is_signed(&self) -> bool {
        self.signed || self.online
    }

    /// Whether the zone has RRSIG, NSEC, NSEC3 or DNSKEY records.
    pub fn is_presigned(&self) -> bool {
        self.signed
    }

    /// Whether dnslb signs the zone online.
    pub fn is_online(&self) -> bool {
        self.online
    }

    /// Marks the zone as one dnslb signs online.
    pub fn sign_online(&mut self) {
        self.online = true;
    }

    /// The zone's SOA RRset; loading guarantees there is exactly one.
    pub fn soa(&self) -> &Rrset {
        self.nodes
            .get(self.origin.as_bytes())
            .and_then(|apex| apex.rrset(RecordType::SOA))
            .expect("a loaded zone has an SOA at its apex")
    }

    /// The SOA's data (serial and timers).
    pub fn soa_data(&self) -> Option<&SOA> {
        match self.soa().rdatas().first() {
            Some(RData::SOA(soa)) => Some(soa),
            _ => None,
        }
    }

    /// Whether `other` holds the same records, the SOA's serial aside
    /// (the order of records within an RRset aside too).
    pub fn same_data(&self, other: &Zone) -> bool {
        let soas = self.soa_data().zip(other.soa_data());
        self.origin == other.origin
            && self.soa().ttl() == other.soa().ttl()
            && soas.is_some_and(|(a, b)| serial::same_but_serial(a, b))
            && self.nodes.len() == other.nodes.len()
            && self.nodes.iter().all(|(name, node)| {
                other.nodes.get(name).is_some_and(|theirs| {
                    node.rrsets.len() == theirs.rrsets.len()
                        && node.rrsets.iter().all(|rrset| {
                            rrset.record_type() == RecordType::SOA
                                || theirs
                                    .rrset(rrset.record_type())
                                    .is_some_and(|their| rrset.same_records(their))
                        })
                })
            })
    }

    /// The SOA's serial number.
    pub fn serial(&self) -> u32 {
        self.soa_data().map_or(0, |soa| soa.serial)
    }

    /// The zone with `serial` in its SOA, the rest as it is: the serial a
    /// zone dnslb signs has, which rises with each signed version of it.
    pub fn with_serial(&self, serial: u32) -> Zone {
        let mut nodes = self.nodes.clone();
        if let Some(apex) = nodes.get_mut(self.origin.as_bytes())
            && let Some(soa) = apex
                .rrsets
                .iter_mut()
                .find(|set| set.record_type() == RecordType::SOA)
            && let Some(RData::SOA(fields)) = soa.rdatas().first()
        {
            let mut fields = fields.clone();
            fields.serial = serial;
            let mut raised = Rrset::new(RecordType::SOA, soa.ttl());
            raised.add(soa.ttl(), RData::SOA(fields));
            *soa = raised;
        }
        Zone {
            origin: self.origin.clone(),
            origin_name: self.origin_name.clone(),
            nodes,
            negative_soa: OnceLock::new(),
            has_cuts: self.has_cuts,
            has_wildcards: self.has_wildcards,
            signed: self.signed,
            online: self.online,
            denial: OnceLock::new(),
            signing: OnceLock::new(),
        }
    }

    /// Every record of the zone, in zone order (the SOA included); each
    /// RRSIG with the TTL of the RRset it covers.
    pub fn records(&self) -> impl Iterator<Item = Record> + '_ {
        self.nodes().flat_map(|(owner, node)| {
            let owner = owner.to_name();
            node.rrsets()
                .iter()
                .flat_map(|rrset| rrset.records(&owner))
                .map(|mut record| {
                    if let Some(ttl) = dnssec::covered(&record.data)
                        .and_then(|covered| dnssec::covered_ttl(node, covered))
                    {
                        record.ttl = ttl;
                    }
                    record
                })
                .collect::<Vec<_>>()
        })
    }

    /// The SOA record for the authority section of NXDOMAIN and NODATA
    /// answers, in wire form: owner the apex (uncompressed), TTL the lesser
    /// of the SOA's TTL and its minimum field (RFC 2308 §3).
    pub fn negative_soa_wire(&self) -> &[u8] {
        self.negative_soa.get_or_init(|| {
            let soa = self.soa();
            let Some(rdata @ RData::SOA(fields)) = soa.rdatas().first() else {
                return Box::default();
            };
            let Some(data) = encode_rdata(rdata) else {
                return Box::default();
            };
            let mut wire = self.origin_name.to_bytes().unwrap_or_default();
            wire.extend_from_slice(&u16::from(RecordType::SOA).to_be_bytes());
            wire.extend_from_slice(&1u16.to_be_bytes());
            wire.extend_from_slice(&soa.ttl().min(fields.minimum).to_be_bytes());
            wire.extend_from_slice(&(data.len() as u16).to_be_bytes());
            wire.extend_from_slice(&data);
            wire.into_boxed_slice()
        })
    }

    /// The node of the lowercase wire name `name`.
    pub fn node(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// The node of `name` with its owner name as stored.
    pub fn nodes_get(&self, name: &[u8]) -> Option<(&WireName, &Node)> {
        self.nodes.get_key_value(name)
    }

    pub fn nodes(&self) -> impl Iterator<Item = (&WireName, &Node)> {
        self.nodes.iter()
    }

    /// The delegation covering `name`: the NS RRset of the highest zone cut
    /// below the apex at or above `name` (data below it is not ours).
    pub fn delegation(&self, name: &[u8]) -> Option<(&WireName, &Rrset)> {
        self.delegation_from(Some(name))
    }

    /// As [`Zone::delegation`], looking at `start` and the names above it.
    fn delegation_from(&self, start: Option<&[u8]>) -> Option<(&WireName, &Rrset)> {
        if !self.has_cuts {
            return None;
        }
        let mut cut = None;
        let mut current = start;
        while let Some(candidate) = current {
            if candidate.len() <= self.origin.as_bytes().len() {
                break;
            }
            if let Some((owner, node)) = self.nodes.get_key_value(candidate)
                && let Some(ns) = node.rrset(RecordType::NS)
            {
                cut = Some((owner, ns));
            }
            current = wire::parent(candidate);
        }
        cut
    }

    /// Answers `name` (lowercase wire form, inside this zone) and
    /// `record_type` from this zone's data.
    pub fn lookup(&self, name: &[u8], record_type: RecordType) -> Lookup<'_> {
        // The DS RRset at a cut belongs to the parent (RFC 4035 §3.1.4.1):
        // only cuts above the name refer a DS query elsewhere.
        let start = if record_type == RecordType::DS {
            wire::parent(name)
        } else {
            Some(name)
        };
        if let Some((cut, ns)) = self.delegation_from(start) {
            return Lookup::Delegation(cut, ns);
        }
        let node = match self.nodes.get(name) {
            Some(node) => node,
            None => match self.wildcard_for(name) {
                Some(wildcard) => wildcard,
                None => return Lookup::NxDomain,
            },
        };
        if record_type == RecordType::ANY {
            // RFC 8482's minimal answer: one RRset, the lowest type, as
            // Knot DNS picks.
            return match node
                .rrsets
                .iter()
                .min_by_key(|set| u16::from(set.record_type()))
            {
                Some(set) => Lookup::Answer(set),
                None => Lookup::NoData,
            };
        }
        if let Some(set) = node.rrset(record_type) {
            return Lookup::Answer(set);
        }
        match node.rrset(RecordType::CNAME) {
            // An NSEC query is about the name itself: a CNAME there is not
            // followed (as Knot DNS answers it).
            Some(alias) if record_type != RecordType::NSEC => Lookup::Alias(alias),
            _ => Lookup::NoData,
        }
    }

    /// The wildcard that synthesises answers for `name`, which does not
    /// exist (RFC 4592 §3.3.1): `*` below its closest encloser, the nearest
    /// ancestor that exists (empty non-terminals included). Without one,
    /// the name is NXDOMAIN.
    fn wildcard_for(&self, name: &[u8]) -> Option<&Node> {
        if !self.has_wildcards {
            return None;
        }
        let mut ancestor = wire::parent(name);
        while let Some(candidate) = ancestor {
            if candidate.len() < self.origin.as_bytes().len() {
                return None;
            }
            if self.nodes.contains_key(candidate) {
                let source = wildcard_below(candidate);
                return self.nodes.get(source.as_slice());
            }
            ancestor = wire::parent(candidate);
        }
        None
    }

    /// An empty zone, to be filled by [`Zone::add`].
    fn new(origin: &Name) -> Option<Zone> {
        Some(Zone {
            origin: WireName::from_name(origin)?,
            origin_name: origin.to_lowercase(),
            nodes: Nodes::default(),
            negative_soa: OnceLock::new(),
            has_cuts: false,
            has_wildcards: false,
            signed: false,
            online: false,
            denial: OnceLock::new(),
            signing: OnceLock::new(),
        })
    }

    /// Adds one record, creating its node and the empty non-terminals
    /// between it and the apex. The caller checked it is inside the zone.
    fn add(&mut self, owner: WireName, record_type: RecordType, ttl: u32, rdata: RData) {
        self.has_cuts |= record_type == RecordType::NS && owner != self.origin;
        self.has_wildcards |= owner.as_bytes().starts_with(WILDCARD_LABEL);
        self.signed |= matches!(
            record_type,
            RecordType::RRSIG | RecordType::NSEC | RecordType::NSEC3 | RecordType::DNSKEY
        );
        if !self.nodes.contains_key(owner.as_bytes()) {
            // Every node's ancestors are in the map, so stop at the first.
            let mut ancestor = wire::parent(owner.as_bytes());
            while let Some(name) = ancestor {
                if name.len() < self.origin.as_bytes().len() || self.nodes.contains_key(name) {
                    break;
                }
                self.nodes.insert(WireName::from(name), Node::default());
                ancestor = wire::parent(name);
            }
        }
        let node = self.nodes.entry(owner).or_default();
        match node
            .rrsets
            .iter_mut()
            .find(|set| set.record_type() == record_type)
        {
            Some(set) => set.add(ttl, rdata),
            None => {
                let mut set = Rrset::new(record_type, ttl);
                set.add(ttl, rdata);
                node.rrsets.push(set);
            }
        }
    }
}
