//! The DNSSEC records of a zone signed elsewhere, as RFC 4035 §3.1 puts
//! them in answers to queries with DO: the RRSIGs of each RRset sent, and
//! the NSEC (RFC 4035 §3.1.3) or NSEC3 (RFC 5155 §7.2) records that prove
//! a name, a type, or a closer match for a wildcard does not exist.

use std::cmp::Ordering;

use hickory_proto::{
    dnssec::{
        Algorithm, DigestType, Nsec3HashAlgorithm, Verifier,
        rdata::{DNSSECRData, DS},
    },
    rr::{RData, RecordType},
};

use super::{Node, WireName, Zone, wildcard_below, wire};

/// What a negative or wildcard answer must prove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// The name exists without the type asked.
    NoData,
    /// The name does not exist, nor a wildcard that would answer it.
    NxDomain,
    /// The answer came from a wildcard: no closer name exists.
    WildcardAnswer,
    /// A wildcard matched, without the type asked.
    WildcardNoData,
    /// A referral to a child without a DS: the cut has none.
    NoDs,
}

/// What the operator of a signed zone watches: its keys, the DS records
/// its parent needs, and when its first signature expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signing {
    pub keys: Vec<ZoneKey>,
    /// RRSIG records in the zone.
    pub signatures: usize,
    /// When the first of them expires (seconds since 1970).
    pub first_expiration: Option<u32>,
}

/// One DNSKEY of a zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneKey {
    pub tag: u16,
    pub algorithm: Algorithm,
    /// A key-signing key (the SEP flag): its DS goes to the parent.
    pub key_signing: bool,
    /// Its DS record's data with a SHA-256 digest (RFC 4509).
    pub ds: Option<DS>,
}

impl Signing {
    fn of(zone: &Zone) -> Signing {
        let origin = zone.origin_name();
        let keys = zone
            .node(zone.origin.as_bytes())
            .and_then(|apex| apex.rrset(RecordType::DNSKEY))
            .map(|set| {
                set.rdatas()
                    .iter()
                    .filter_map(|rdata| match rdata {
                        RData::DNSSEC(DNSSECRData::DNSKEY(key)) => Some(key),
                        _ => None,
                    })
                    .filter_map(|key| {
                        let tag = key.calculate_key_tag().ok()?;
                        let ds = key
                            .to_digest(origin, DigestType::SHA256)
                            .ok()
                            .map(|digest| {
                                DS::new(
                                    tag,
                                    key.algorithm(),
                                    DigestType::SHA256,
                                    digest.as_ref().to_vec(),
                                )
                            });
                        Some(ZoneKey {
                            tag,
                            algorithm: key.algorithm(),
                            key_signing: key.secure_entry_point(),
                            ds,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let expirations: Vec<u32> = zone
            .nodes
            .values()
            .filter_map(|node| node.rrset(RecordType::RRSIG))
            .flat_map(|set| set.rdatas())
            .filter_map(|rdata| match rdata {
                RData::DNSSEC(DNSSECRData::RRSIG(rrsig)) => {
                    Some(rrsig.input().sig_expiration.get())
                }
                _ => None,
            })
            .collect();
        Signing {
            keys,
            signatures: expirations.len(),
            first_expiration: expirations.into_iter().min(),
        }
    }
}

/// Where a zone's denial records are, in the order proofs search them.
#[derive(Debug, Default)]
pub(super) struct DenialChain {
    /// Owners of NSEC records, in canonical order (RFC 4034 §6.1).
    nsec: Vec<WireName>,
    /// NSEC3 records: the hash of the NSEC3PARAM's kind, and the owners by
    /// their hashed label (base32hex keeps the hashes' order).
    nsec3: Option<Nsec3Chain>,
}

#[derive(Debug)]
struct Nsec3Chain {
    salt: Vec<u8>,
    iterations: u16,
    /// (first label, lowercase base32hex; owner), sorted.
    owners: Vec<(Vec<u8>, WireName)>,
}

/// The type an RRSIG covers.
pub fn covered(rdata: &RData) -> Option<RecordType> {
    match rdata {
        RData::DNSSEC(DNSSECRData::RRSIG(rrsig)) => Some(rrsig.input().type_covered),
        _ => None,
    }
}

/// The TTL of the RRset of `covered` at `node`: its RRSIGs' TTL
/// (RFC 4035 §2.2), whatever the other RRSIGs there have.
pub(super) fn covered_ttl(node: &Node, covered: RecordType) -> Option<u32> {
    node.rrset(covered).map(|set| set.ttl())
}

/// RFC 4034 §6.1: names compared label by label from the root, each
/// label as lowercase bytes (wire names here are lowercase already).
pub fn canonical_cmp(a: &[u8], b: &[u8]) -> Ordering {
    labels(a).iter().rev().cmp(labels(b).iter().rev())
}

/// The labels of a wire name, from the left.
fn labels(mut name: &[u8]) -> Vec<&[u8]> {
    let mut found = Vec::new();
    while let Some(&len) = name.first()
        && len > 0
    {
        let end = 1 + usize::from(len);
        found.push(name.get(1..end).unwrap_or_default());
        name = name.get(end..).unwrap_or_default();
    }
    found
}

/// In `sorted` (a chain of denial records), the last one that is not
/// after a name (`not_after` says which are), or the last of all when the
/// name sorts before the first: a chain's last record spans the wrap.
fn at_or_before<T>(sorted: &[T], not_after: impl FnMut(&T) -> bool) -> Option<&T> {
    let after = sorted.partition_point(not_after);
    sorted.get(after.checked_sub(1).unwrap_or(sorted.len().wrapping_sub(1)))
}

impl DenialChain {
    pub(super) fn of(zone: &Zone) -> DenialChain {
        let mut nsec: Vec<WireName> = zone
            .nodes
            .iter()
            .filter(|(_, node)| node.rrset(RecordType::NSEC).is_some())
            .map(|(name, _)| name.clone())
            .collect();
        nsec.sort_by(|a, b| canonical_cmp(a.as_bytes(), b.as_bytes()));
        let parameters = zone
            .node(zone.origin.as_bytes())
            .and_then(|apex| apex.rrset(RecordType::NSEC3PARAM))
            .and_then(|set| match set.rdatas().first() {
                Some(RData::DNSSEC(DNSSECRData::NSEC3PARAM(parameters))) => {
                    Some((parameters.salt().to_vec(), parameters.iterations()))
                }
                _ => None,
            });
        let nsec3 = parameters.map(|(salt, iterations)| {
            let mut owners: Vec<(Vec<u8>, WireName)> = zone
                .nodes
                .iter()
                .filter(|(_, node)| node.rrset(RecordType::NSEC3).is_some())
                .filter_map(|(name, _)| {
                    let label = name
                        .as_bytes()
                        .get(1..1 + usize::from(name.as_bytes()[0]))?;
                    Some((label.to_vec(), name.clone()))
                })
                .collect();
            owners.sort();
            Nsec3Chain {
                salt,
                iterations,
                owners,
            }
        });
        DenialChain { nsec, nsec3 }
    }
}

impl Zone {
    /// The RRSIGs at `owner` that cover `covered`.
    pub fn signatures(&self, owner: &[u8], covered: RecordType) -> Vec<RData> {
        self.node(owner)
            .and_then(|node| node.rrset(RecordType::RRSIG))
            .map(|set| {
                set.rdatas()
                    .iter()
                    .filter(|rdata| self::covered(rdata) == Some(covered))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The owners and types of the denial records that prove `proof` for
    /// `name` (in the zone, lowercase wire form): NSEC or NSEC3, as the
    /// zone was signed. Each comes with its RRSIGs from
    /// [`Zone::signatures`].
    pub fn denial(&self, name: &[u8], proof: Proof) -> Vec<(WireName, RecordType)> {
        let chain = self.denial.get_or_init(|| DenialChain::of(self));
        let mut owners = match &chain.nsec3 {
            Some(nsec3) => self
                .nsec3_proof(nsec3, name, proof)
                .into_iter()
                .map(|owner| (owner, RecordType::NSEC3))
                .collect::<Vec<_>>(),
            None => self
                .nsec_proof(&chain.nsec, name, proof)
                .into_iter()
                .map(|owner| (owner, RecordType::NSEC))
                .collect(),
        };
        owners.dedup();
        owners
    }

    /// The nearest ancestor of `name` (a name that does not exist) that
    /// does, empty non-terminals included.
    fn closest_encloser<'a>(&self, name: &'a [u8]) -> &'a [u8] {
        let mut current = name;
        while let Some(candidate) = wire::parent(current) {
            if self.nodes.contains_key(candidate) || candidate.len() <= self.origin.as_bytes().len()
            {
                return candidate;
            }
            current = candidate;
        }
        current
    }

    fn nsec_proof(&self, owners: &[WireName], name: &[u8], proof: Proof) -> Vec<WireName> {
        // The NSEC at `name`, or the one whose span covers it.
        let at_or_before = |name: &[u8]| -> Option<WireName> {
            at_or_before(owners, |owner| {
                canonical_cmp(owner.as_bytes(), name) != Ordering::Greater
            })
            .cloned()
        };
        let found = match proof {
            Proof::NoData | Proof::NoDs | Proof::WildcardAnswer => vec![at_or_before(name)],
            Proof::NxDomain | Proof::WildcardNoData => {
                let encloser = self.closest_encloser(name);
                vec![at_or_before(name), at_or_before(&wildcard_below(encloser))]
            }
        };
        found.into_iter().flatten().collect()
    }

    fn nsec3_proof(&self, chain: &Nsec3Chain, name: &[u8], proof: Proof) -> Vec<WireName> {
        let hashed = |name: &[u8]| -> Option<Vec<u8>> {
            let digest = Nsec3HashAlgorithm::SHA1
                .hash(
                    &chain.salt,
                    &WireName::from(name).to_name(),
                    chain.iterations,
                )
                .ok()?;
            Some(
                data_encoding::BASE32HEX_NOPAD
                    .encode(digest.as_ref())
                    .to_ascii_lowercase()
                    .into_bytes(),
            )
        };
        // The NSEC3 whose hash is `name`'s, or whose span covers it.
        let at_or_before = |name: &[u8]| -> Option<WireName> {
            let hash = hashed(name)?;
            at_or_before(&chain.owners, |(label, _)| *label <= hash).map(|(_, owner)| owner.clone())
        };
        // The name one label longer than the closest encloser, towards
        // `name`: the next closer name (RFC 5155 §7.2.1).
        let next_closer = |encloser: &[u8]| -> &[u8] {
            let mut current = name;
            while let Some(parent) = wire::parent(current) {
                if parent.len() <= encloser.len() {
                    return current;
                }
                current = parent;
            }
            current
        };
        let found = match proof {
            Proof::NoData | Proof::NoDs => vec![at_or_before(name)],
            Proof::WildcardAnswer => {
                let encloser = self.closest_encloser(name);
                vec![at_or_before(next_closer(encloser))]
            }
            Proof::NxDomain | Proof::WildcardNoData => {
                let encloser = self.closest_encloser(name);
                vec![
                    at_or_before(encloser),
                    at_or_before(next_closer(encloser)),
                    at_or_before(&wildcard_below(encloser)),
                ]
            }
        };
        found.into_iter().flatten().collect()
    }

    /// The zone's keys and signatures, when it is signed.
    pub fn signing(&self) -> Option<&Signing> {
        self.signed
            .then(|| self.signing.get_or_init(|| Signing::of(self)))
    }

    /// The answer to an RRSIG query at `name` (or at the wildcard that
    /// answers for it): one signature, of the lowest type signed there,
    /// with that RRset's TTL, as Knot DNS answers it.
    pub fn rrsig_answer(&self, name: &[u8]) -> Option<(RData, u32)> {
        let node = match self.node(name) {
            Some(node) => node,
            None => self.node(self.wildcard_owner(name).as_bytes())?,
        };
        let rrsig = node
            .rrset(RecordType::RRSIG)?
            .rdatas()
            .iter()
            .filter_map(|rdata| Some((covered(rdata)?, rdata)))
            .min_by_key(|(covered, _)| u16::from(*covered))?;
        let ttl = covered_ttl(node, rrsig.0)?;
        Some((rrsig.1.clone(), ttl))
    }

    /// The wildcard that answers for `name`, which does not exist:
    /// `*` below its closest encloser.
    pub fn wildcard_owner(&self, name: &[u8]) -> WireName {
        WireName::from(wildcard_below(self.closest_encloser(name)).as_slice())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use hickory_proto::rr::Name;

    use super::*;
    use crate::zone::load_zone;

    fn wire(name: &str) -> WireName {
        WireName::from_name(&Name::from_ascii(name).unwrap()).unwrap()
    }

    fn signed(file: &str) -> Zone {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/zones")
            .join(file);
        load_zone(&Name::from_ascii("signed.test.").unwrap(), &path).unwrap()
    }

    #[test]
    fn names_sort_by_labels_from_the_root() {
        let mut names = [
            "z.example.",
            "example.",
            "a.example.",
            "yljkjljk.a.example.",
            "*.z.example.",
            "zabc.a.example.",
            "z.a.example.",
        ]
        .map(wire);
        names.sort_by(|a, b| canonical_cmp(a.as_bytes(), b.as_bytes()));
        let sorted: Vec<String> = names.iter().map(|n| n.to_name().to_string()).collect();
        // RFC 4034 §6.1's example, in part.
        assert_eq!(
            sorted,
            [
                "example.",
                "a.example.",
                "yljkjljk.a.example.",
                "z.a.example.",
                "zabc.a.example.",
                "z.example.",
                "*.z.example.",
            ]
        );
    }

    #[test]
    fn nsec_proofs_name_the_records_that_cover() {
        let zone = signed("signed.test.nsec.zone");
        let names = |proof: Proof, name: &str| -> Vec<String> {
            zone.denial(wire(name).as_bytes(), proof)
                .iter()
                .map(|(owner, _)| owner.to_name().to_string())
                .collect()
        };
        // www exists: its own NSEC says what it has.
        assert_eq!(
            names(Proof::NoData, "www.signed.test."),
            ["www.signed.test."]
        );
        // nope sorts between insecure and ns1 (the glue below insecure is
        // in no chain); no wildcard below the apex, and the apex's NSEC
        // spans *.signed.test.
        assert_eq!(
            names(Proof::NxDomain, "nope.signed.test."),
            ["insecure.signed.test.", "signed.test."]
        );
        // b.c is an empty non-terminal: the NSEC before it (alias, whose
        // next name is a.b.c) covers it.
        assert_eq!(
            names(Proof::NoData, "b.c.signed.test."),
            ["alias.signed.test."]
        );
        // x.wild came from the wildcard: *.wild's span covers x.wild.
        assert_eq!(
            names(Proof::WildcardAnswer, "x.wild.signed.test."),
            ["*.wild.signed.test."]
        );
        assert_eq!(
            names(Proof::NoDs, "insecure.signed.test."),
            ["insecure.signed.test."]
        );
    }

    #[test]
    fn nsec3_proofs_match_and_cover_hashes() {
        let zone = signed("signed.test.nsec3.zone");
        let proof = |proof: Proof, name: &str| zone.denial(wire(name).as_bytes(), proof);
        // Every proof is made of NSEC3 records the zone has.
        for (kind, name, count) in [
            (Proof::NoData, "www.signed.test.", 1),
            (Proof::NxDomain, "nope.signed.test.", 3),
            (Proof::WildcardAnswer, "x.wild.signed.test.", 1),
            (Proof::NoDs, "insecure.signed.test.", 1),
        ] {
            let found = proof(kind, name);
            assert!(
                (1..=count).contains(&found.len()),
                "{kind:?} {name}: {found:?}"
            );
            for (owner, record_type) in &found {
                assert_eq!(*record_type, RecordType::NSEC3);
                assert!(
                    zone.node(owner.as_bytes())
                        .and_then(|n| n.rrset(RecordType::NSEC3))
                        .is_some()
                );
                assert!(
                    !zone
                        .signatures(owner.as_bytes(), RecordType::NSEC3)
                        .is_empty()
                );
            }
        }
        assert_eq!(
            zone.signatures(wire("www.signed.test.").as_bytes(), RecordType::A)
                .len(),
            1
        );
    }
}

#[cfg(test)]
mod signing_tests {
    use std::process::Command;

    use hickory_proto::rr::RecordType;

    /// The keys and DS records of the BIND-signed fixture, as BIND's own
    /// tools see them.
    #[test]
    fn a_signed_zone_says_its_keys_their_ds_and_its_first_expiry() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/zones/signed.test.nsec.zone");
        let zone = crate::zone::load_zone(
            &hickory_proto::rr::Name::from_ascii("signed.test.").unwrap(),
            &path,
        )
        .unwrap();
        let signing = zone.signing().expect("signed");
        let roles: Vec<(u16, bool)> = signing
            .keys
            .iter()
            .map(|k| (k.tag, k.key_signing))
            .collect();
        assert_eq!(roles, [(11056, false), (64066, true)]);
        // 2046-01-01T00:00:00Z, the expiration dnssec-signzone was given.
        assert_eq!(signing.first_expiration, Some(2398377600));
        let rrsigs = zone
            .records()
            .filter(|record| record.record_type() == RecordType::RRSIG)
            .count();
        assert_eq!(signing.signatures, rrsigs);
        let ksk = signing.keys.iter().find(|k| k.key_signing).unwrap();
        let ours = format!("signed.test. IN DS {}", ksk.ds.as_ref().unwrap());
        let bind = Command::new("dnssec-dsfromkey")
            .args(["-2", "-f"])
            .arg(&path)
            .arg("signed.test")
            .output()
            .expect("dnssec-dsfromkey (bind9-utils)");
        assert_eq!(String::from_utf8_lossy(&bind.stdout).trim(), ours);
    }
}
