//! Writing a service's current answers into the kernel without a moment
//! in which a query sees a wrong answer or none.
//!
//! A name that does not depend on the client gets one value, swapped whole.
//! Every value carries the Client Subnet scope its answers report: the
//! length of the client network that decided them, as the daemon reports.
//! A client-dependent name gets a fresh generation: every network's value is
//! written under a new generation number first, then the name's value is
//! switched to that generation in one update, and only then are the old
//! generation's networks removed. A query sees the old generation or the new
//! one, never a mix, and never a network missing.

use std::{collections::HashMap, net::IpAddr};

use dns_common::{HotName, MAX_ENDPOINTS, SET_SIGNED};

use super::{
    Dataplane, DataplaneError, Endpoint, HotAnswer, HotSignatures, HotType, HotValue, RrsetSigner,
};
use crate::policy::{ClientNet, Draw, Flat, Health, Pool, Service};

/// What the kernel holds for the services: per service label, the
/// generation its client networks are written under, so that the next
/// write can remove them. The one place that writes services into the maps.
#[derive(Debug, Default)]
pub struct KernelServices {
    written: HashMap<String, KernelService>,
    /// The last generation handed out; 0 is never used.
    generation: u32,
}

/// What the kernel holds for one service.
#[derive(Clone, Debug, Default)]
struct KernelService {
    generation: Option<(HotType, u32, Vec<ClientNet>)>,
    /// When the earliest of its signatures is due to be written again.
    renew_at: Option<u64>,
}

impl KernelServices {
    /// Writes `service`'s answers for the current `health` (services of
    /// types the kernel does not answer are left alone), each with its
    /// signatures from `signer` when the service's zone is signed online
    /// (without them, the kernel passes its DO queries).
    pub fn write(
        &mut self,
        dataplane: &mut Dataplane,
        service: &Service,
        (pools, health): (&[Pool], &dyn Health),
        signer: Option<&dyn RrsetSigner>,
    ) -> Result<(), DataplaneError> {
        let Some(hot_type) = HotType::of(service.record_type) else {
            return Ok(());
        };
        let name = HotName::from_wire(service.name.as_bytes())
            .ok_or_else(|| DataplaneError::Name(service.name.to_string()))?;
        let signer = signer.filter(|_| service.signed);
        let mut renew_at: Option<u64> = None;
        let mut sign = |value: &HotValue| {
            let signatures = HotSignatures::sign(&name, value, signer?)?;
            let due = signatures.renew_at();
            renew_at = Some(renew_at.map_or(due, |at| at.min(due)));
            Some(signatures)
        };
        let mut now = if service.policy.depends_on_client() {
            // Above what a previous daemon used in pinned maps.
            self.generation = self.generation.max(dataplane.generation_floor());
            let generation = self.next_generation();
            let networks = service.client_networks();
            let written = KernelService {
                generation: Some((hot_type, generation, networks.clone())),
                renew_at: None,
            };
            let switched = networks
                .iter()
                .try_for_each(|network| {
                    let draw = service.draw(pools, health, Some(*network));
                    let value = encode_draw(&draw, service.ttl, hot_type)
                        .with_scope(service.policy.scope(*network));
                    dataplane.set_client_net_signed(
                        generation,
                        network.octets(),
                        network.prefix_len(),
                        &value,
                        sign(&value).as_ref(),
                    )
                })
                .and_then(|()| {
                    let value = HotValue::by_client(hot_type, generation);
                    dataplane.set_hot(&name, &value.with_flags(signed_flag(service)))
                });
            if let Err(error) = switched {
                // The name still points at the previous generation, which
                // stays recorded; what was written of this one goes.
                let _ = remove_generation(dataplane, written);
                return Err(error);
            }
            written
        } else {
            let value = encode_draw(&service.draw(pools, health, None), service.ttl, hot_type);
            let signatures = sign(&value);
            dataplane.set_hot_signed(
                &name,
                &value.with_flags(signed_flag(service)),
                signatures.as_ref(),
            )?;
            KernelService::default()
        };
        now.renew_at = renew_at;
        // Only now that the name points at the new answers.
        let previous = self.written.insert(service.label.clone(), now);
        remove_generation(dataplane, previous.unwrap_or_default())
    }

    /// Client networks written for `label` now.
    pub fn networks(&self, label: &str) -> usize {
        self.written
            .get(label)
            .and_then(|service| service.generation.as_ref())
            .map_or(0, |(_, _, networks)| networks.len())
    }

    /// Makes every service's signatures due (the keys signing changed).
    pub fn renew_all_signatures(&mut self) {
        for service in self.written.values_mut() {
            if service.renew_at.is_some() {
                service.renew_at = Some(0);
            }
        }
    }

    /// The services whose signatures in the kernel are due to be written
    /// again at `now`.
    pub fn signatures_due(&self, now: u64) -> Vec<String> {
        self.written
            .iter()
            .filter(|(_, service)| service.renew_at.is_some_and(|at| at <= now))
            .map(|(label, _)| label.clone())
            .collect()
    }

    /// Client networks written for every service now.
    pub fn total_networks(&self) -> usize {
        self.written.keys().map(|label| self.networks(label)).sum()
    }

    /// Makes the kernel pass every query for `service` to the daemon (a
    /// service waiting for a function pool: the daemon's answer wakes it).
    pub fn pass_to_daemon(
        &mut self,
        dataplane: &mut Dataplane,
        service: &Service,
    ) -> Result<(), DataplaneError> {
        let Some(hot_type) = HotType::of(service.record_type) else {
            return Ok(());
        };
        let name = HotName::from_wire(service.name.as_bytes())
            .ok_or_else(|| DataplaneError::Name(service.name.to_string()))?;
        dataplane.set_hot(&name, &HotValue::to_userspace(hot_type))?;
        let previous = self.written.remove(&service.label).unwrap_or_default();
        remove_generation(dataplane, previous)?;
        self.written
            .insert(service.label.clone(), KernelService::default());
        Ok(())
    }

    /// Takes a service out of the kernel: its name, then its networks.
    pub fn remove(
        &mut self,
        dataplane: &mut Dataplane,
        service: &Service,
    ) -> Result<(), DataplaneError> {
        if let (Some(name), Some(hot_type)) = (
            HotName::from_wire(service.name.as_bytes()),
            HotType::of(service.record_type),
        ) {
            dataplane.remove_hot(&name, hot_type)?;
        }
        let previous = self.written.remove(&service.label).unwrap_or_default();
        remove_generation(dataplane, previous)
    }

    fn next_generation(&mut self) -> u32 {
        self.generation = self.generation.wrapping_add(1).max(1);
        self.generation
    }
}

/// The flags of a service's kernel entry: DO queries for a name in a
/// signed zone are answered with signatures.
fn signed_flag(service: &Service) -> u8 {
    if service.signed { SET_SIGNED } else { 0 }
}

/// The kernel value for one draw of a service answering `hot_type`.
/// Endpoints of the other address family are not part of its answers.
pub fn encode_draw(draw: &Draw, ttl: u32, hot_type: HotType) -> HotValue {
    let fits = |addr: &IpAddr| match hot_type {
        HotType::A => addr.is_ipv4(),
        HotType::Aaaa => addr.is_ipv6(),
    };
    let flat = draw.flatten().filter(|flat| match flat {
        Flat::Rotate { endpoints, .. } => !endpoints.is_empty() && endpoints.len() <= MAX_ENDPOINTS,
        Flat::Weighted(choices) => choices.len() <= MAX_ENDPOINTS,
    });
    let encoded = match flat {
        Some(Flat::Rotate { endpoints, answers }) => {
            let endpoints: Vec<_> = endpoints.iter().filter(|e| fits(&e.addr)).collect();
            let addrs = endpoints.iter().map(|e| e.addr).collect();
            let branches: Vec<u16> = endpoints.iter().map(|e| e.branch).collect();
            HotAnswer::RoundRobin { ttl, addrs }
                .encode_counted(hot_type, &branches)
                .map(|value| value.with_answers(answers))
        }
        Some(Flat::Weighted(choices)) => {
            let choices: Vec<_> = choices.iter().filter(|(_, e)| fits(&e.addr)).collect();
            let endpoints = choices
                .iter()
                .map(|(weight, e)| Endpoint {
                    addr: e.addr,
                    weight: *weight,
                })
                .collect();
            let branches: Vec<u16> = choices.iter().map(|(_, e)| e.branch).collect();
            HotAnswer::Weighted { ttl, endpoints }.encode_counted(hot_type, &branches)
        }
        None => return HotValue::to_userspace(hot_type),
    };
    encoded.unwrap_or_else(|_| HotValue::to_userspace(hot_type))
}

fn remove_generation(
    dataplane: &mut Dataplane,
    previous: KernelService,
) -> Result<(), DataplaneError> {
    if let Some((hot_type, generation, networks)) = previous.generation {
        for network in networks {
            dataplane.remove_client_net(
                hot_type,
                generation,
                network.octets(),
                network.prefix_len(),
            )?;
        }
    }
    Ok(())
}
