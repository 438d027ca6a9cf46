//! The signed zones' metrics, read at scrape time from the zones being
//! served: their keys by role, and how long until their first signature
//! expires (the alert that saves a zone signed elsewhere from going bogus
//! when its signer stops re-signing); for the zones dnslb signs, its
//! signer's work: signatures made, cache hits and misses, keys by state,
//! the next key event and signing failures.

use std::sync::Weak;

use prometheus::{
    core::{Collector, Desc},
    proto::MetricFamily,
};

use super::Responder;
use crate::{
    metrics::family::Family,
    signer::{KeyState, SignerStatus},
};

pub struct SigningCollector {
    /// Weak: the registry must not keep the responder alive.
    responder: Weak<Responder>,
    keys: Family,
    expiry: Family,
    states: Family,
    next_event: Family,
    made: Family,
    failures: Family,
    hits: Family,
    misses: Family,
    cached: Family,
    cached_bytes: Family,
}

impl SigningCollector {
    pub fn new(responder: Weak<Responder>) -> SigningCollector {
        SigningCollector {
            responder,
            keys: Family::gauge(
                "dnslb_dnssec_keys",
                "DNSKEYs of each signed zone, by role (ksk: the SEP flag; zsk).",
                &["zone", "role"],
            ),
            expiry: Family::gauge(
                "dnslb_dnssec_first_signature_expiry_seconds",
                "Seconds until the first RRSIG of each signed zone expires (below zero: expired, and validating resolvers find its answers bogus).",
                &["zone"],
            ),
            states: Family::gauge(
                "dnslb_dnssec_keys_by_state",
                "Keys of each zone dnslb signs, by state (published, active, retired...).",
                &["zone", "state"],
            ),
            next_event: Family::gauge(
                "dnslb_dnssec_next_key_event_seconds",
                "Seconds until the next planned key event of each zone dnslb signs (a publication, activation, retirement or removal).",
                &["zone"],
            ),
            made: Family::counter(
                "dnslb_dnssec_signatures_made_total",
                "RRSIGs made by the online signer.",
                &["zone"],
            ),
            failures: Family::counter(
                "dnslb_dnssec_signing_failures_total",
                "RRSIGs the online signer failed to make.",
                &["zone"],
            ),
            hits: Family::counter(
                "dnslb_dnssec_signature_cache_hits_total",
                "Answers whose RRSIGs came from the signature cache.",
                &["zone"],
            ),
            misses: Family::counter(
                "dnslb_dnssec_signature_cache_misses_total",
                "Answers whose RRSIGs were made on demand.",
                &["zone"],
            ),
            cached: Family::gauge(
                "dnslb_dnssec_signature_cache_entries",
                "RRsets whose signatures are cached.",
                &["zone"],
            ),
            cached_bytes: Family::gauge(
                "dnslb_dnssec_signature_cache_bytes",
                "Memory of the signature cache.",
                &["zone"],
            ),
        }
    }
}

impl Collector for SigningCollector {
    fn desc(&self) -> Vec<&Desc> {
        [
            &self.keys,
            &self.expiry,
            &self.states,
            &self.next_event,
            &self.made,
            &self.failures,
            &self.hits,
            &self.misses,
            &self.cached,
            &self.cached_bytes,
        ]
        .into_iter()
        .flat_map(Family::desc)
        .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(responder) = self.responder.upgrade() else {
            return Vec::new();
        };
        let catalog = responder.catalog();
        let signers = responder.signers();
        let unix = u64::from(super::unix_now());
        let online: Vec<(String, SignerStatus)> = signers
            .iter()
            .map(|(origin, signer)| (origin.to_name().to_string(), signer.status(unix)))
            .collect();
        let now = f64::from(super::unix_now());
        let signed: Vec<(String, &crate::zone::dnssec::Signing)> = catalog
            .zones()
            .filter_map(|zone| Some((zone.origin_name().to_string(), zone.signing()?)))
            .collect();
        let keys = signed.iter().flat_map(|(zone, signing)| {
            ["ksk", "zsk"].map(|role| {
                let count = signing
                    .keys
                    .iter()
                    .filter(|key| key.key_signing == (role == "ksk"))
                    .count();
                (vec![zone.as_str(), role], count as f64)
            })
        });
        let expiry = signed.iter().filter_map(|(zone, signing)| {
            let at = f64::from(signing.first_expiration?);
            Some((vec![zone.as_str()], at - now))
        });
        let online_keys = online.iter().flat_map(|(zone, status)| {
            ["ksk", "zsk"].map(|role| {
                let count = status
                    .keys
                    .iter()
                    .filter(|key| {
                        key.key.key_signing() == (role == "ksk")
                            && matches!(
                                key.state,
                                KeyState::Published | KeyState::Active | KeyState::Retired
                            )
                    })
                    .count();
                (vec![zone.as_str(), role], count as f64)
            })
        });
        const STATES: [(KeyState, &str); 5] = [
            (KeyState::Created, "created"),
            (KeyState::Published, "published"),
            (KeyState::Active, "active"),
            (KeyState::Retired, "retired"),
            (KeyState::Removed, "removed"),
        ];
        let states = online.iter().flat_map(|(zone, status)| {
            STATES.map(|(state, name)| {
                let count = status.keys.iter().filter(|key| key.state == state).count();
                (vec![zone.as_str(), name], count as f64)
            })
        });
        let per_zone = |value: fn(&SignerStatus) -> Option<f64>| {
            online
                .iter()
                .filter_map(move |(zone, status)| Some((vec![zone.as_str()], value(status)?)))
        };
        let all_keys: Vec<(Vec<&str>, f64)> = keys.chain(online_keys).collect();
        let mut families = self.keys.collect(all_keys);
        families.extend(self.expiry.collect(expiry));
        families.extend(self.states.collect(states));
        families.extend(
            self.next_event
                .collect(online.iter().filter_map(|(zone, status)| {
                    Some((vec![zone.as_str()], status.next_event? as f64 - now))
                })),
        );
        families.extend(
            self.made
                .collect(per_zone(|s| Some(s.signatures_made as f64))),
        );
        families.extend(self.failures.collect(per_zone(|s| Some(s.failures as f64))));
        families.extend(self.hits.collect(per_zone(|s| Some(s.cache.hits as f64))));
        families.extend(
            self.misses
                .collect(per_zone(|s| Some(s.cache.misses as f64))),
        );
        families.extend(
            self.cached
                .collect(per_zone(|s| Some(s.cache.entries as f64))),
        );
        families.extend(
            self.cached_bytes
                .collect(per_zone(|s| Some(s.cache.bytes as f64))),
        );
        families
    }
}
