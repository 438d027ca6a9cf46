//! Zones: the authoritative data, loaded from RFC 1035 master files.
//!
//! A [`Zone`] is immutable once built; replacing a zone means building a new
//! one and swapping it into the [`Catalog`], so a bad file never disturbs
//! what is serving.

mod catalog;
mod entries;
mod load;

use std::collections::HashMap;

use hickory_proto::rr::{LowerName, Name, RecordSet, RecordType};

pub use catalog::Catalog;
pub use load::{ZoneError, load_zone, parse_zone};

/// One name in the zone and its RRsets. A node without RRsets is an empty
/// non-terminal: it exists because names below it do.
#[derive(Debug, Default)]
pub struct Node {
    rrsets: Vec<RecordSet>,
}

impl Node {
    pub fn rrset(&self, record_type: RecordType) -> Option<&RecordSet> {
        self.rrsets
            .iter()
            .find(|set| set.record_type() == record_type)
    }

    pub fn rrsets(&self) -> &[RecordSet] {
        &self.rrsets
    }
}

/// What the zone holds for a question.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// The RRset asked for.
    Answer(&'a RecordSet),
    /// The name is an alias: the CNAME RRset.
    Alias(&'a RecordSet),
    /// The name is below a zone cut: the delegation's NS RRset.
    Delegation(&'a RecordSet),
    /// The name exists, without data of that type.
    NoData,
    /// The name does not exist.
    NxDomain,
}

#[derive(Debug)]
pub struct Zone {
    origin: LowerName,
    nodes: HashMap<LowerName, Node>,
}

impl Zone {
    pub fn origin(&self) -> &LowerName {
        &self.origin
    }

    /// The zone's SOA RRset; loading guarantees there is exactly one.
    pub fn soa(&self) -> &RecordSet {
        self.nodes
            .get(&self.origin)
            .and_then(|apex| apex.rrset(RecordType::SOA))
            .expect("a loaded zone has an SOA at its apex")
    }

    pub fn node(&self, name: &LowerName) -> Option<&Node> {
        self.nodes.get(name)
    }

    pub fn nodes(&self) -> impl Iterator<Item = (&LowerName, &Node)> {
        self.nodes.iter()
    }

    /// The delegation covering `name`: the NS RRset of the closest zone cut
    /// strictly below the apex at or above `name`.
    pub fn delegation(&self, name: &LowerName) -> Option<&RecordSet> {
        let mut cut = None;
        let mut current = name.clone();
        while current != self.origin && self.origin.zone_of(&current) {
            if let Some(ns) = self
                .nodes
                .get(&current)
                .and_then(|node| node.rrset(RecordType::NS))
            {
                cut = Some(ns);
            }
            current = current.base_name();
        }
        cut
    }

    /// Answers `name`/`record_type` from this zone's data.
    pub fn lookup(&self, name: &LowerName, record_type: RecordType) -> Lookup<'_> {
        if let Some(ns) = self.delegation(name) {
            return Lookup::Delegation(ns);
        }
        let Some(node) = self.nodes.get(name) else {
            return Lookup::NxDomain;
        };
        if let Some(set) = node.rrset(record_type) {
            return Lookup::Answer(set);
        }
        match node.rrset(RecordType::CNAME) {
            Some(alias) => Lookup::Alias(alias),
            None => Lookup::NoData,
        }
    }

    /// Builds a zone from parsed RRsets, adding the empty non-terminals.
    fn from_rrsets(origin: Name, rrsets: impl IntoIterator<Item = RecordSet>) -> Zone {
        let origin = LowerName::new(&origin);
        let mut nodes: HashMap<LowerName, Node> = HashMap::new();
        for set in rrsets {
            let owner = LowerName::new(set.name());
            let mut ancestor = owner.base_name();
            while origin.zone_of(&ancestor) && !nodes.contains_key(&ancestor) {
                nodes.insert(ancestor.clone(), Node::default());
                if ancestor == origin {
                    break;
                }
                ancestor = ancestor.base_name();
            }
            nodes.entry(owner).or_default().rrsets.push(set);
        }
        Zone { origin, nodes }
    }
}
