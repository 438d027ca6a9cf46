//! Signatures for the kernel's answers to DO queries: a zone's signer
//! signs the RRsets its hot values answer with, and says how long the
//! kernel may send them.

use std::net::IpAddr;

use dns_common::HotName;
use hickory_proto::rr::RData;

use super::{ZoneSigner, now};
use crate::{
    dataplane::{HotType, RrsetSigner, Rrsigs},
    zone::{WireName, address_rdata},
};

impl RrsetSigner for ZoneSigner {
    /// The kernel keeps a signature while the daemon's answers would
    /// (until a quarter of its validity is left), and is given a new one
    /// from half way, when the signer's sweep makes it.
    fn rrsigs(
        &self,
        owner: &HotName,
        hot_type: HotType,
        ttl: u32,
        addrs: &[IpAddr],
    ) -> Option<Rrsigs> {
        let rdatas: Vec<RData> = addrs.iter().copied().map(address_rdata).collect();
        let name = WireName::from(owner.wire()).to_name();
        let validity = self.policy.validity.as_secs();
        let signed = self.sign_lasting(
            &name,
            owner.wire(),
            (hot_type.record_type(), ttl, &rdatas),
            now(),
            validity / 2,
        );
        // The signer keeps each RRSIG's data as its bytes.
        let data = signed.iter().filter_map(|rrsig| match rrsig {
            RData::Unknown { rdata, .. } => Some(rdata.anything.as_slice()),
            _ => None,
        });
        Rrsigs::encode(data, ttl, |expiration| {
            (
                expiration.saturating_sub(validity / 4),
                expiration.saturating_sub(validity / 2),
            )
        })
    }
}
