//! The copy of a zone dnslb signs online that its secondaries transfer:
//! secondaries that are not dnslb (Knot, BIND, NSD) serve what they hold,
//! so they get a signed zone as a signer would write it, with a classic
//! NSEC chain (RFC 4034 §4) over every name dnslb answers, services
//! included, and every authoritative RRset signed.
//!
//! A copy has its own serial, above the file's and the last copy's (kept
//! in the state directory across restarts), and the zone is served with
//! it. A new copy is made when what it holds changes (the zone, a
//! service's healthy endpoints, the keys) and when its signatures are half
//! way through their validity, so that secondaries fetch fresh ones,
//! NOTIFY telling them, long before the old ones expire.
//!
//! A copy cannot weigh, rotate or tell clients apart: a service's names
//! hold every endpoint a client of no listed network may be given now.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use hickory_proto::{
    dnssec::rdata::{DNSSECRData, NSEC},
    rr::{Name, RData, Record, RecordType, SerialNumber},
};

use super::respond::Responder;
use crate::{
    signer::{RrsetData, ZoneSigner},
    steering::Steered,
    zone::{Catalog, WireName, Zone, address_rdata},
};

/// One signed version of a zone, as transfers send it.
#[derive(Debug)]
pub struct SignedCopy {
    pub serial: u32,
    /// What it was made from: the RRsets (the SOA's serial zeroed) and
    /// the keys that signed them.
    content: Vec<RrsetData>,
    signing: [Vec<u16>; 2],
    /// The zone and services it was last checked against.
    zone: Arc<Zone>,
    steered: Arc<Steered>,
    /// When its signatures are half way through their validity.
    renew_at: u64,
    /// The whole zone as AXFR sends it: the SOA, every record, the SOA.
    pub records: Arc<[Record]>,
}

/// The copies, and the serials the last run left (from the state
/// directory), by apex.
#[derive(Debug, Default)]
pub struct SignedCopies {
    copies: HashMap<WireName, Arc<SignedCopy>>,
    floors: HashMap<WireName, u32>,
}

impl SignedCopies {
    /// The serial `zone` is served with: its file's, unless a copy (or
    /// the last run) gave it a later one.
    fn served_serial(&self, zone: &Zone) -> u32 {
        let apex = zone.origin();
        let given = self
            .copies
            .get(apex)
            .map(|copy| copy.serial)
            .or_else(|| self.floors.get(apex).copied());
        match given {
            Some(given) if !later(zone.serial(), given) => given,
            _ => zone.serial(),
        }
    }
}

/// Whether serial `a` comes after `b` (RFC 1982 arithmetic).
fn later(a: u32, b: u32) -> bool {
    SerialNumber::new(a) > SerialNumber::new(b)
}

impl Responder {
    /// Whether `zone` has a signed copy for secondaries: dnslb signs it
    /// and it has secondaries (`allow_transfer` or `notify`).
    fn copied(&self, zone: &Zone) -> bool {
        zone.is_online()
            && self
                .transfer_rules()
                .get(zone.origin())
                .is_some_and(|rule| !rule.allow.is_empty() || !rule.notify.is_empty())
    }

    /// `catalog` with each zone that has a signed copy at the serial it is
    /// served with.
    pub(super) fn with_copy_serials(&self, copies: &SignedCopies, catalog: Catalog) -> Catalog {
        let mut catalog = catalog;
        let raised: Vec<Zone> = catalog
            .zones()
            .filter(|zone| self.copied(zone))
            .filter_map(|zone| {
                let serial = copies.served_serial(zone);
                (serial != zone.serial()).then(|| zone.with_serial(serial))
            })
            .collect();
        for zone in raised {
            catalog.insert(zone);
        }
        catalog
    }

    /// The serials the last run's copies had: the next copies come after
    /// them, and the zones are served with them until then.
    pub fn set_copy_serials(&self, serials: HashMap<WireName, u32>) {
        let Ok(mut copies) = self.copies.lock() else {
            return;
        };
        copies.floors = serials;
        let catalog = self.with_copy_serials(&copies, (*self.catalog()).clone());
        self.store_catalog(catalog);
    }

    /// The serial of each zone's copy.
    pub fn copy_serials(&self) -> HashMap<WireName, u32> {
        let Ok(copies) = self.copies.lock() else {
            return HashMap::new();
        };
        let mut serials = copies.floors.clone();
        serials.extend(
            copies
                .copies
                .iter()
                .map(|(apex, copy)| (apex.clone(), copy.serial)),
        );
        serials
    }

    /// Makes a new copy of each zone whose copy is missing or stale at
    /// `now`, and serves the zone with its serial. Returns the zones with
    /// a new copy and its serial.
    pub fn renew_signed_copies(&self, now: u64) -> Vec<(Name, u32)> {
        let catalog = self.catalog();
        let apexes: Vec<WireName> = catalog
            .zones()
            .filter(|zone| self.copied(zone))
            .map(|zone| zone.origin().clone())
            .collect();
        // A zone no longer copied lets its copy go; its serial stays the
        // floor of the next, should it come back.
        if let Ok(mut copies) = self.copies.lock() {
            let gone: Vec<WireName> = copies
                .copies
                .keys()
                .filter(|apex| !apexes.contains(apex))
                .cloned()
                .collect();
            for apex in gone {
                if let Some(copy) = copies.copies.remove(&apex) {
                    copies.floors.insert(apex, copy.serial);
                }
            }
        }
        apexes
            .iter()
            .filter_map(|apex| self.renew_copy(apex, now))
            .map(|copy| (copy.0, copy.1.serial))
            .collect()
    }

    /// The copy of the zone at `apex` for a transfer at `now`: the current
    /// one, made first if there is none or it is stale.
    pub(super) fn signed_copy(&self, apex: &WireName, now: u64) -> Option<Arc<SignedCopy>> {
        match self.renew_copy(apex, now) {
            Some((_, copy)) => Some(copy),
            None => self.copies.lock().ok()?.copies.get(apex).cloned(),
        }
    }

    /// A new copy of the zone at `apex`, if its copy is missing or stale.
    fn renew_copy(&self, apex: &WireName, now: u64) -> Option<(Name, Arc<SignedCopy>)> {
        let mut copies = self.copies.lock().ok()?;
        let catalog = self.catalog();
        let zone = catalog.get(apex).filter(|zone| self.copied(zone))?;
        let signers = self.signers();
        let signer = signers.get(apex)?;
        let steered = self.steered();
        let signing = signer.signing_tags(now);
        let current = copies.copies.get(apex);
        // Still good: same keys, signatures fresh, and the file's serial
        // not raised past it.
        let fresh = |copy: &SignedCopy| {
            copy.signing == signing && now < copy.renew_at && !later(zone.serial(), copy.serial)
        };
        if let Some(copy) = current
            && fresh(copy)
            && Arc::ptr_eq(&copy.zone, zone)
            && Arc::ptr_eq(&copy.steered, &steered)
        {
            return None;
        }
        let content = content(zone, &steered, signer, now);
        if let Some(copy) = current
            && fresh(copy)
            && copy.content == content
        {
            // Nothing it holds changed: it stays, checked against these.
            let kept = Arc::new(SignedCopy {
                zone: zone.clone(),
                steered,
                content: copy.content.clone(),
                signing: copy.signing.clone(),
                records: copy.records.clone(),
                ..**copy
            });
            let serial = kept.serial;
            copies.copies.insert(apex.clone(), kept);
            if zone.serial() != serial {
                let catalog = self.with_copy_serials(&copies, (*catalog).clone());
                self.store_catalog(catalog);
            }
            return None;
        }
        let last = current
            .map(|copy| copy.serial)
            .or_else(|| copies.floors.get(apex).copied());
        let serial = match last {
            Some(last) if !later(zone.serial(), last) => last.wrapping_add(1),
            _ => zone.serial(),
        };
        let records = sign(zone, &content, signer, serial, now);
        let copy = Arc::new(SignedCopy {
            serial,
            content,
            signing,
            zone: zone.clone(),
            steered,
            renew_at: now + signer.policy().validity.as_secs() / 2,
            records: records.into(),
        });
        copies.copies.insert(apex.clone(), copy.clone());
        let catalog = self.with_copy_serials(&copies, (*catalog).clone());
        self.store_catalog(catalog);
        tracing::info!(
            "zone {}: signed copy for secondaries, serial {serial}, {} records",
            zone.origin_name(),
            copy.records.len()
        );
        Some((zone.origin_name().clone(), copy))
    }
}

/// What a copy of `zone` holds at `now`, unsigned: its RRsets but for the
/// addresses services answer, the services' standing answers, and the
/// apex's keys; in canonical order (RFC 4034 §6.1), the SOA's serial 0.
fn content(zone: &Zone, steered: &Steered, signer: &ZoneSigner, now: u64) -> Vec<RrsetData> {
    let apex = zone.origin_name();
    let mut rrsets: BTreeMap<(Name, u16), RrsetData> = BTreeMap::new();
    let mut add = |rrset: RrsetData| {
        rrsets.insert((rrset.owner.clone(), rrset.record_type.into()), rrset);
    };
    for (wire, node) in zone.nodes() {
        let owner = wire.to_name();
        let served = steered.types_at(wire.as_bytes());
        for set in node.rrsets() {
            if served.contains(&set.record_type()) {
                continue;
            }
            let rdatas = set
                .rdatas()
                .iter()
                .map(|rdata| match rdata {
                    RData::SOA(soa) => {
                        let mut soa = soa.clone();
                        soa.serial = 0;
                        RData::SOA(soa)
                    }
                    other => other.clone(),
                })
                .collect();
            add(RrsetData {
                owner: owner.clone(),
                record_type: set.record_type(),
                ttl: set.ttl(),
                rdatas,
            });
        }
    }
    let mut service_names = Vec::new();
    for (name, record_type, ttl, addrs) in steered.standing_answers(zone.origin().as_bytes()) {
        let owner = name.to_name();
        service_names.push(owner.clone());
        if addrs.is_empty() {
            continue;
        }
        let rdatas = addrs.into_iter().map(address_rdata).collect();
        add(RrsetData {
            owner,
            record_type,
            ttl,
            rdatas,
        });
    }
    let ttl = signer.policy().dnskey_ttl;
    for record_type in [RecordType::DNSKEY, RecordType::CDS, RecordType::CDNSKEY] {
        let rdatas = signer.apex_keys(record_type, now).unwrap_or_default();
        if !rdatas.is_empty() {
            add(RrsetData {
                owner: apex.clone(),
                record_type,
                ttl,
                rdatas,
            });
        }
    }
    let mut content: Vec<RrsetData> = rrsets.into_values().collect();
    // A service's name whose answer is empty now still exists: an NSEC
    // chain must not deny it.
    for owner in service_names {
        if !content.iter().any(|rrset| rrset.owner == owner) {
            content.push(RrsetData {
                owner,
                record_type: RecordType::NULL,
                ttl: 0,
                rdatas: Vec::new(),
            });
        }
    }
    content.sort_by(|a, b| {
        (&a.owner, u16::from(a.record_type)).cmp(&(&b.owner, b.record_type.into()))
    });
    content
}

/// Where a name stands for signing (RFC 4035 §2.2).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Authoritative data: every RRset signed, an NSEC.
    Authoritative,
    /// A zone cut: only its DS and NSEC are signed.
    Cut,
    /// Below a cut (glue): neither signed nor in the chain.
    Occluded,
}

fn standing(zone: &Zone, owner: &Name) -> Standing {
    let Some(wire) = WireName::from_name(owner) else {
        return Standing::Occluded;
    };
    match zone.delegation(wire.as_bytes()) {
        None => Standing::Authoritative,
        Some((cut, _)) if *cut == wire => Standing::Cut,
        Some(_) => Standing::Occluded,
    }
}

/// The signed zone from `content` with `serial`: the SOA, each name's
/// RRsets with their RRSIGs and its NSEC with its own, the SOA again.
fn sign(
    zone: &Zone,
    content: &[RrsetData],
    signer: &ZoneSigner,
    serial: u32,
    now: u64,
) -> Vec<Record> {
    let mut by_owner: Vec<(&Name, Vec<&RrsetData>)> = Vec::new();
    for rrset in content {
        match by_owner.last_mut() {
            Some((owner, sets)) if *owner == &rrset.owner => sets.push(rrset),
            _ => by_owner.push((&rrset.owner, vec![rrset])),
        }
    }
    let standings: Vec<Standing> = by_owner
        .iter()
        .map(|(owner, _)| standing(zone, owner))
        .collect();
    let chained: Vec<&Name> = by_owner
        .iter()
        .zip(&standings)
        .filter(|(_, standing)| **standing != Standing::Occluded)
        .map(|((owner, _), _)| *owner)
        .collect();
    // RFC 9077: an NSEC's TTL is the lesser of the SOA's TTL and minimum.
    let soa_ttl = zone.soa().ttl();
    let nsec_ttl = zone
        .soa_data()
        .map_or(soa_ttl, |soa| soa_ttl.min(soa.minimum));
    let mut records = Vec::new();
    let mut soa_record = None;
    let push_signed = |records: &mut Vec<Record>, rrset: &RrsetData| {
        records.extend(
            rrset
                .rdatas
                .iter()
                .map(|rdata| Record::from_rdata(rrset.owner.clone(), rrset.ttl, rdata.clone())),
        );
        records.extend(
            signer
                .sign_anew(rrset, now)
                .iter()
                .map(|rrsig| Record::from_rdata(rrset.owner.clone(), rrset.ttl, rrsig.clone())),
        );
    };
    let mut next_in_chain = chained.iter().cycle().skip(1);
    for ((owner, sets), standing) in by_owner.iter().zip(standings) {
        let sets: Vec<RrsetData> = sets
            .iter()
            .filter(|set| set.record_type != RecordType::NULL)
            .map(|set| with_soa_serial(set, serial))
            .collect();
        for set in &sets {
            let signed = match standing {
                Standing::Authoritative => true,
                Standing::Cut => set.record_type == RecordType::DS,
                Standing::Occluded => false,
            };
            if set.record_type == RecordType::SOA {
                soa_record = set
                    .rdatas
                    .first()
                    .map(|rdata| Record::from_rdata(set.owner.clone(), set.ttl, rdata.clone()));
            }
            if signed {
                push_signed(&mut records, set);
            } else {
                records.extend(
                    set.rdatas
                        .iter()
                        .map(|rdata| Record::from_rdata(set.owner.clone(), set.ttl, rdata.clone())),
                );
            }
        }
        if standing == Standing::Occluded {
            continue;
        }
        let Some(next) = next_in_chain.next() else {
            continue;
        };
        let mut types: Vec<RecordType> = sets
            .iter()
            .map(|set| set.record_type)
            .chain([RecordType::RRSIG, RecordType::NSEC])
            .collect();
        types.sort_by_key(|t| u16::from(*t));
        types.dedup();
        let nsec = RrsetData {
            owner: (*owner).clone(),
            record_type: RecordType::NSEC,
            ttl: nsec_ttl,
            rdatas: vec![RData::DNSSEC(DNSSECRData::NSEC(NSEC::new(
                (*next).clone(),
                types,
            )))],
        };
        push_signed(&mut records, &nsec);
    }
    // AXFR: the SOA first and last (RFC 5936 §2.2).
    if let Some(soa) = soa_record {
        if let Some(at) = records.iter().position(|record| *record == soa) {
            records.remove(at);
        }
        records.insert(0, soa.clone());
        records.push(soa);
    }
    records
}

/// `rrset`, with `serial` if it is the SOA.
fn with_soa_serial(rrset: &RrsetData, serial: u32) -> RrsetData {
    let mut rrset = rrset.clone();
    for rdata in &mut rrset.rdatas {
        if let RData::SOA(soa) = rdata {
            soa.serial = serial;
        }
    }
    rrset
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use hickory_proto::dnssec::rdata::RRSIG;

    use super::*;
    use crate::{
        server::{Signers, ZoneTransfer},
        signer::{SigningPolicy, now},
        zone::parse_zone,
    };

    const ZONE: &str = "$TTL 300\n@ SOA ns h 7 2 3 4 60\n@ NS ns\nns A 198.18.0.53\n\
        www A 198.18.1.1\n*.wild TXT \"any\"\na.b.deep A 198.18.1.2\n\
        sub NS ns.sub\nsub DS 12345 13 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n\
        ns.sub A 198.18.0.54\nopen NS ns.elsewhere.example.\n";

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    /// A responder signing `ZONE` online, with a secondary.
    fn signing(text: &str) -> (Responder, std::path::PathBuf) {
        let origin = name("example.com.");
        let mut zone = parse_zone(&origin, text, Path::new("t.zone")).unwrap();
        zone.sign_online();
        let dir = std::env::temp_dir().join(format!(
            "dnslb-copy-keys-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let signer =
            ZoneSigner::open(&origin, SigningPolicy::default(), &dir, None, now()).unwrap();
        let apex = zone.origin().clone();
        let mut catalog = Catalog::default();
        catalog.insert(zone);
        let responder = Responder::new(catalog, 1232);
        responder.set_signers(Signers::from([(apex.clone(), Arc::new(signer))]));
        let rule = ZoneTransfer {
            allow: vec![crate::policy::parse_network("198.18.0.0/24").unwrap()],
            ..ZoneTransfer::default()
        };
        responder.set_transfer_rules(HashMap::from([(apex, rule)]));
        (responder, dir)
    }

    /// Serves `text` as the zone's new version, as a reload does.
    fn serve(responder: &Responder, text: &str) {
        let mut zone = parse_zone(&name("example.com."), text, Path::new("t.zone")).unwrap();
        zone.sign_online();
        let mut catalog = Catalog::default();
        catalog.insert(zone);
        responder.set_catalog(catalog);
    }

    fn apex() -> WireName {
        WireName::from_name(&name("example.com.")).unwrap()
    }

    /// `record` as a secondary reads it: an RRSIG's data decoded.
    fn rrsig(record: &Record) -> Option<RRSIG> {
        use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
        let read = Record::from_bytes(&record.to_bytes().ok()?).ok()?;
        match read.data {
            RData::DNSSEC(DNSSECRData::RRSIG(rrsig)) => Some(rrsig),
            _ => None,
        }
    }

    #[test]
    fn a_copy_is_the_zone_signed_with_a_closed_nsec_chain_and_glue_left_unsigned() {
        let (responder, dir) = signing(ZONE);
        let copy = responder.signed_copy(&apex(), now()).expect("a copy");
        let records = &copy.records;
        let soa_serial = |record: &Record| match &record.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        };
        assert_eq!(soa_serial(&records[0]), Some(7));
        assert_eq!(soa_serial(&records[records.len() - 1]), Some(7));

        // The chain: every name but glue, in canonical order, closed.
        let chain: Vec<(String, String, Vec<RecordType>)> = records
            .iter()
            .filter_map(|record| match &record.data {
                RData::DNSSEC(DNSSECRData::NSEC(nsec)) => Some((
                    record.name.to_ascii(),
                    nsec.next_domain_name().to_ascii(),
                    nsec.type_bit_maps().collect(),
                )),
                _ => None,
            })
            .collect();
        let owners: Vec<&str> = chain.iter().map(|(owner, _, _)| owner.as_str()).collect();
        assert_eq!(
            owners,
            [
                "example.com.",
                "a.b.deep.example.com.",
                "ns.example.com.",
                "open.example.com.",
                "sub.example.com.",
                "*.wild.example.com.",
                "www.example.com.",
            ]
        );
        for (at, (_, next, _)) in chain.iter().enumerate() {
            assert_eq!(*next, chain[(at + 1) % chain.len()].0);
        }
        let types = |owner: &str| &chain.iter().find(|(o, _, _)| o == owner).unwrap().2;
        use RecordType::*;
        assert_eq!(types("example.com."), &[NS, SOA, RRSIG, NSEC, DNSKEY]);
        assert_eq!(types("sub.example.com."), &[NS, DS, RRSIG, NSEC]);
        assert_eq!(types("open.example.com."), &[NS, RRSIG, NSEC]);

        // What is signed: each authoritative RRset; at a cut only DS and
        // NSEC; below it nothing. The NSEC's TTL is the SOA's minimum.
        let signed: Vec<(String, RecordType)> = records
            .iter()
            .filter_map(|record| {
                Some((record.name.to_ascii(), rrsig(record)?.input().type_covered))
            })
            .collect();
        let signs =
            |owner: &str, covered: RecordType| signed.contains(&(owner.to_owned(), covered));
        for (owner, covered) in [
            ("example.com.", SOA),
            ("example.com.", NS),
            ("example.com.", DNSKEY),
            ("example.com.", NSEC),
            ("www.example.com.", A),
            ("*.wild.example.com.", TXT),
            ("sub.example.com.", DS),
            ("sub.example.com.", NSEC),
            ("open.example.com.", NSEC),
        ] {
            assert!(signs(owner, covered), "{owner} {covered} is signed");
        }
        for (owner, covered) in [
            ("sub.example.com.", NS),
            ("open.example.com.", NS),
            ("ns.sub.example.com.", A),
        ] {
            assert!(!signs(owner, covered), "{owner} {covered} is not signed");
        }
        assert!(
            records
                .iter()
                .any(|r| r.name == name("ns.sub.example.com.") && r.record_type() == A),
            "glue goes with the zone"
        );
        let nsec_ttls: Vec<u32> = records
            .iter()
            .filter(|r| r.record_type() == NSEC)
            .map(|r| r.ttl)
            .collect();
        assert!(nsec_ttls.iter().all(|ttl| *ttl == 60), "{nsec_ttls:?}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_new_copy_has_a_higher_serial_which_the_zone_is_served_with_and_an_unchanged_zone_none() {
        let (responder, dir) = signing(ZONE);
        let served = |responder: &Responder| responder.catalog().get(&apex()).unwrap().serial();
        let at = now();
        assert_eq!(
            responder.renew_signed_copies(at),
            [(name("example.com."), 7)]
        );
        assert!(
            responder.renew_signed_copies(at).is_empty(),
            "nothing changed"
        );
        assert_eq!(served(&responder), 7);

        // The data changes, the file's serial does not: the next serial.
        let edited = format!("{ZONE}new A 198.18.1.9\n");
        serve(&responder, &edited);
        assert_eq!(
            responder.renew_signed_copies(at),
            [(name("example.com."), 8)]
        );
        assert_eq!(served(&responder), 8);
        // The same file read again is served at the copy's serial.
        serve(&responder, &edited);
        assert_eq!(served(&responder), 8);
        assert!(responder.renew_signed_copies(at).is_empty());

        // Half way through the signatures' validity: signed again.
        let half = SigningPolicy::default().validity.as_secs() / 2;
        assert_eq!(
            responder.renew_signed_copies(at + half),
            [(name("example.com."), 9)]
        );
        // A restart goes on from the serial kept.
        let (restarted, other) = signing(ZONE);
        restarted.set_copy_serials(responder.copy_serials());
        assert_eq!(served(&restarted), 9);
        assert_eq!(
            restarted.renew_signed_copies(at),
            [(name("example.com."), 10)]
        );

        // A file serial raised past the copies' is taken.
        let raised = ZONE.replace(" 7 2 3 4 60", " 2026120700 2 3 4 60");
        serve(&restarted, &raised);
        assert_eq!(
            restarted.renew_signed_copies(at),
            [(name("example.com."), 2026120700)]
        );
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(other);
    }
}
