//! The DNSSEC records of an answer to a DO query (RFC 4035 §3.1), from
//! wherever the zone's signatures come from: the zone file (a zone signed
//! elsewhere) or dnslb's online signer, whose denials are compact
//! (RFC 9824).

use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::{
    signer::{ZoneSigner, denial},
    zone::{Rrset, WireName, Zone, dnssec::Proof},
};

/// How one zone's part of an answer gets its DNSSEC records.
#[derive(Clone, Copy)]
pub enum Dnssec<'a> {
    /// No DO, or a zone that is not signed: none.
    Off,
    /// A zone signed elsewhere: the RRSIGs and NSEC or NSEC3 records the
    /// zone holds.
    Presigned,
    /// A zone dnslb signs, at this time.
    Online(&'a ZoneSigner, u64),
}

impl<'a> Dnssec<'a> {
    pub fn is_on(self) -> bool {
        !matches!(self, Dnssec::Off)
    }

    pub fn signer(self) -> Option<&'a ZoneSigner> {
        match self {
            Dnssec::Online(signer, _) => Some(signer),
            _ => None,
        }
    }

    /// The RRSIGs of the RRset `rdatas` of `record_type` owned by `owner`
    /// with `ttl`. `at` is where a zone signed elsewhere holds them (the
    /// name, or the wildcard that answered for it); online, the owner's
    /// lowercase wire form.
    pub fn rrsigs(
        self,
        zone: &Zone,
        at: &[u8],
        owner: &Name,
        record_type: RecordType,
        ttl: u32,
        rdatas: &[RData],
    ) -> Vec<Record> {
        let record = |rrsig: RData| Record::from_rdata(owner.clone(), ttl, rrsig);
        match self {
            Dnssec::Off => Vec::new(),
            Dnssec::Presigned => zone
                .signatures(at, record_type)
                .into_iter()
                .map(record)
                .collect(),
            // The cached RRSIGs are shared; the answer takes its own copy
            // of each, in their wire form.
            Dnssec::Online(signer, now) => signer
                .sign(owner, at, record_type, ttl, rdatas, now)
                .iter()
                .cloned()
                .map(record)
                .collect(),
        }
    }

    /// [`Dnssec::rrsigs`] of a zone's RRset.
    pub fn set_rrsigs(self, zone: &Zone, at: &[u8], owner: &Name, set: &Rrset) -> Vec<Record> {
        self.rrsigs(zone, at, owner, set.record_type(), set.ttl(), set.rdatas())
    }

    /// The negative answer's SOA with its RRSIGs, its TTL capped by the
    /// SOA minimum (RFC 2308 §3).
    pub fn negative_soa(self, zone: &Zone) -> Vec<Record> {
        let mut records = negative_soa(zone);
        if let Some(soa) = records.first().cloned() {
            // Signed as the zone has it (the RRSIG's original TTL is the
            // SOA's own), sent with the capped TTL.
            let rrsigs = self.rrsigs(
                zone,
                zone.origin().as_bytes(),
                &soa.name,
                RecordType::SOA,
                zone.soa().ttl(),
                std::slice::from_ref(&soa.data),
            );
            records.extend(rrsigs.into_iter().map(|mut rrsig| {
                rrsig.ttl = soa.ttl;
                rrsig
            }));
        }
        records
    }

    /// The records that prove `proof` for `name` (lowercase wire form;
    /// `owner` as answered). Online, one compact NSEC at `owner` listing
    /// `types`, the types the name has (for a missing name, NXNAME); a
    /// wildcard's answer needs none, as it is signed as the name's own.
    pub fn denial(
        self,
        zone: &Zone,
        name: &[u8],
        owner: &Name,
        proof: Proof,
        types: &[RecordType],
    ) -> Vec<Record> {
        match self {
            Dnssec::Off => Vec::new(),
            Dnssec::Presigned => presigned_denial(zone, name, proof),
            Dnssec::Online(..) => {
                let nsec = match proof {
                    Proof::WildcardAnswer => return Vec::new(),
                    Proof::NxDomain => denial::missing(owner),
                    Proof::NoData | Proof::WildcardNoData | Proof::NoDs => {
                        denial::existing(owner, types.iter().copied())
                    }
                };
                // RFC 9077: the NSEC's TTL is the negative answer's.
                let ttl = negative_ttl(zone);
                let mut records = vec![Record::from_rdata(owner.clone(), ttl, nsec.clone())];
                records.extend(self.rrsigs(
                    zone,
                    name,
                    owner,
                    RecordType::NSEC,
                    ttl,
                    std::slice::from_ref(&nsec),
                ));
                records
            }
        }
    }
}

/// The SOA for a negative answer, its TTL capped by the SOA minimum
/// (RFC 2308 §3).
pub fn negative_soa(zone: &Zone) -> Vec<Record> {
    zone.soa()
        .records(zone.origin_name())
        .map(|mut record| {
            if let RData::SOA(soa) = &record.data {
                record.ttl = record.ttl.min(soa.minimum);
            }
            record
        })
        .collect()
}

fn negative_ttl(zone: &Zone) -> u32 {
    let soa_ttl = zone.soa().ttl();
    zone.soa_data()
        .map_or(soa_ttl, |soa| soa_ttl.min(soa.minimum))
}

/// The NSEC or NSEC3 records of a zone signed elsewhere that prove
/// `proof` for `name`, each with its signatures.
fn presigned_denial(zone: &Zone, name: &[u8], proof: Proof) -> Vec<Record> {
    zone.denial(name, proof)
        .into_iter()
        .flat_map(|(owner, record_type)| {
            let owner_name = owner.to_name();
            let set = zone
                .node(owner.as_bytes())
                .and_then(|node| node.rrset(record_type));
            set.map(|set| {
                let mut records: Vec<Record> = set.records(&owner_name).collect();
                records.extend(Dnssec::Presigned.set_rrsigs(
                    zone,
                    owner.as_bytes(),
                    &owner_name,
                    set,
                ));
                records
            })
            .unwrap_or_default()
        })
        .collect()
}

/// The types of the RRsets at `name` in `zone`.
pub fn types_at(zone: &Zone, name: &WireName) -> Vec<RecordType> {
    zone.node(name.as_bytes())
        .map(|node| node.rrsets().iter().map(Rrset::record_type).collect())
        .unwrap_or_default()
}
