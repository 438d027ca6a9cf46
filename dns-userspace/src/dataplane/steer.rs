//! Writing a service's current answers into the kernel without a moment
//! in which a query sees a wrong answer or none.
//!
//! A name that does not depend on the client gets one value, swapped whole.
//! A client-dependent name gets a fresh generation: every network's value is
//! written under a new generation number first, then the name's value is
//! switched to that generation in one update, and only then are the old
//! generation's networks removed. A query sees the old generation or the new
//! one, never a mix, and never a network missing.

use std::{collections::HashSet, net::Ipv4Addr};

use dns_common::{HotA, HotName, MAX_ENDPOINTS, Selection};

use super::{Dataplane, DataplaneError, Endpoint, HotAnswer, hot::by_client};
use crate::policy::{ClientNet, Draw, Flat, Health, Pool, Service};

/// What the kernel holds for one service.
#[derive(Clone, Debug, Default)]
pub struct KernelService {
    generation: Option<(u32, Vec<(Ipv4Addr, u8)>)>,
}

/// Hands out generation numbers; 0 is never used.
#[derive(Debug, Default)]
pub struct Generations(u32);

impl Generations {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(1).max(1);
        self.0
    }
}

/// The value that sends a query to userspace: no endpoints. Written where a
/// draw has no kernel form, so that a shorter client network cannot answer
/// in its place.
fn to_userspace(ttl: u32) -> HotA {
    let mut value = by_client(ttl, 0);
    value.selection = Selection::RoundRobin as u8;
    value
}

/// The kernel value for one draw.
pub fn encode_draw(draw: &Draw, ttl: u32) -> HotA {
    let flat = draw.flatten().filter(|flat| match flat {
        Flat::Rotate { endpoints, .. } => !endpoints.is_empty() && endpoints.len() <= MAX_ENDPOINTS,
        Flat::Weighted(choices) => choices.len() <= MAX_ENDPOINTS,
    });
    let encoded = match flat {
        Some(Flat::Rotate { endpoints, answers }) => {
            let addrs = endpoints.iter().filter_map(|e| v4(e.addr)).collect();
            let branches: Vec<u16> = endpoints.iter().map(|e| e.branch).collect();
            HotAnswer::RoundRobin { ttl, addrs }
                .encode_counted(&branches)
                .map(|mut value| {
                    value.answers = answers.clamp(1, endpoints.len()) as u8;
                    value
                })
        }
        Some(Flat::Weighted(choices)) => {
            let endpoints = choices
                .iter()
                .filter_map(|(weight, e)| {
                    Some(Endpoint {
                        addr: v4(e.addr)?,
                        weight: *weight,
                    })
                })
                .collect();
            let branches: Vec<u16> = choices.iter().map(|(_, e)| e.branch).collect();
            HotAnswer::Weighted { ttl, endpoints }.encode_counted(&branches)
        }
        None => return to_userspace(ttl),
    };
    encoded.unwrap_or_else(|_| to_userspace(ttl))
}

fn v4(addr: std::net::IpAddr) -> Option<Ipv4Addr> {
    match addr {
        std::net::IpAddr::V4(v4) => Some(v4),
        std::net::IpAddr::V6(_) => None,
    }
}

/// Writes `service`'s answers for the current `health`, and returns what
/// the kernel now holds for it (pass the previous one back next time).
pub fn write_service(
    dataplane: &mut Dataplane,
    generations: &mut Generations,
    service: &Service,
    pools: &[Pool],
    health: &dyn Health,
    previous: KernelService,
) -> Result<KernelService, DataplaneError> {
    let name = HotName::from_wire(service.name.as_bytes())
        .ok_or_else(|| DataplaneError::Name(service.name.to_string()))?;
    if !service.policy.depends_on_client() {
        let value = encode_draw(&service.draw(pools, health, None), service.ttl);
        dataplane.set_hot_a(&name, &value)?;
        remove_generation(dataplane, previous)?;
        return Ok(KernelService::default());
    }

    let mut networks = HashSet::new();
    service.policy.client_networks(&mut networks);
    let mut written = vec![(Ipv4Addr::UNSPECIFIED, 0)];
    written.extend(networks.iter().filter_map(ClientNet::v4));
    let generation = generations.next();
    for &(network, len) in &written {
        let client = ClientNet::new(network.into(), len);
        let value = encode_draw(&service.draw(pools, health, Some(client)), service.ttl);
        dataplane.set_client_net(generation, network, len, &value)?;
    }
    dataplane.set_hot_a(&name, &by_client(service.ttl, generation))?;
    remove_generation(dataplane, previous)?;
    Ok(KernelService {
        generation: Some((generation, written)),
    })
}

/// Takes a service out of the kernel: its name, then its networks.
pub fn remove_service(
    dataplane: &mut Dataplane,
    service: &Service,
    previous: KernelService,
) -> Result<(), DataplaneError> {
    if let Some(name) = HotName::from_wire(service.name.as_bytes()) {
        dataplane.remove_hot_a(&name)?;
    }
    remove_generation(dataplane, previous)
}

fn remove_generation(
    dataplane: &mut Dataplane,
    previous: KernelService,
) -> Result<(), DataplaneError> {
    if let Some((generation, networks)) = previous.generation {
        for (network, len) in networks {
            dataplane.remove_client_net(generation, network, len)?;
        }
    }
    Ok(())
}
