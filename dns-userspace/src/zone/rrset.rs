//! An RRset as the server keeps it: type, TTL and the record data only.
//! The owner is the node's name and the class is always IN, so neither is
//! stored per record; a million-name zone stays in a few hundred MiB.

use hickory_proto::rr::{Name, RData, Record, RecordType};

#[derive(Clone, Debug)]
pub struct Rrset {
    record_type: RecordType,
    ttl: u32,
    rdatas: Vec<RData>,
}

impl Rrset {
    pub fn new(record_type: RecordType, ttl: u32) -> Rrset {
        Rrset {
            record_type,
            ttl,
            rdatas: Vec::with_capacity(1),
        }
    }

    /// Adds `rdata` unless the set has it already. RFC 2181 §5.2: one TTL
    /// per RRset; where the file disagrees, the lowest wins.
    pub fn add(&mut self, ttl: u32, rdata: RData) {
        self.ttl = self.ttl.min(ttl);
        if !self.rdatas.contains(&rdata) {
            self.rdatas.push(rdata);
        }
    }

    pub fn record_type(&self) -> RecordType {
        self.record_type
    }

    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    pub fn rdatas(&self) -> &[RData] {
        &self.rdatas
    }

    /// The set's records, owned by `owner`.
    pub fn records<'a>(&'a self, owner: &'a Name) -> impl Iterator<Item = Record> + 'a {
        self.rdatas
            .iter()
            .map(move |rdata| Record::from_rdata(owner.clone(), self.ttl, rdata.clone()))
    }
}
