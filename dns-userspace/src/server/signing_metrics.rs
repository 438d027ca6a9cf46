//! The signed zones' metrics, read at scrape time from the zones being
//! served: their keys by role, and how long until their first signature
//! expires (the alert that saves a zone signed elsewhere from going bogus
//! when its signer stops re-signing).

use std::sync::Weak;

use prometheus::{
    core::{Collector, Desc},
    proto::MetricFamily,
};

use super::Responder;
use crate::metrics::family::Family;

pub struct SigningCollector {
    /// Weak: the registry must not keep the responder alive.
    responder: Weak<Responder>,
    keys: Family,
    expiry: Family,
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
        }
    }
}

impl Collector for SigningCollector {
    fn desc(&self) -> Vec<&Desc> {
        [&self.keys, &self.expiry]
            .into_iter()
            .flat_map(Family::desc)
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(responder) = self.responder.upgrade() else {
            return Vec::new();
        };
        let catalog = responder.catalog();
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
        let mut families = self.keys.collect(keys);
        families.extend(self.expiry.collect(expiry));
        families
    }
}
