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

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use dns_common::{HotName, MAX_ENDPOINTS};

use super::{Dataplane, DataplaneError, Endpoint, HotAnswer, HotType, HotValue};
use crate::policy::{ClientNet, Draw, Flat, Health, Pool, Service};

/// What the kernel holds for one service.
#[derive(Clone, Debug, Default)]
pub struct KernelService {
    generation: Option<(HotType, u32, Vec<ClientNet>)>,
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

/// The networks a client-dependent service is written under: every one its
/// policy tells apart, and a default for each family (`::ffff:0:0/96` for
/// IPv4 clients, `::/0` for the rest), so that every client finds one.
fn written_networks(service: &Service) -> Vec<ClientNet> {
    let mut networks = HashSet::new();
    service.policy.client_networks(&mut networks);
    let defaults = [
        ClientNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        ClientNet::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    ];
    let mut written: Vec<ClientNet> = defaults.to_vec();
    written.extend(
        networks
            .into_iter()
            .filter(|network| !defaults.contains(network)),
    );
    written
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
    let Some(hot_type) = HotType::of(service.record_type) else {
        return Ok(KernelService::default());
    };
    if !service.policy.depends_on_client() {
        let value = encode_draw(&service.draw(pools, health, None), service.ttl, hot_type);
        dataplane.set_hot(&name, &value)?;
        remove_generation(dataplane, previous)?;
        return Ok(KernelService::default());
    }

    let written = written_networks(service);
    let generation = generations.next();
    for network in &written {
        let draw = service.draw(pools, health, Some(*network));
        let value =
            encode_draw(&draw, service.ttl, hot_type).with_scope(service.policy.scope(*network));
        dataplane.set_client_net(generation, network.octets(), network.prefix_len(), &value)?;
    }
    dataplane.set_hot(&name, &HotValue::by_client(hot_type, generation))?;
    remove_generation(dataplane, previous)?;
    Ok(KernelService {
        generation: Some((hot_type, generation, written)),
    })
}

/// Takes a service out of the kernel: its name, then its networks.
pub fn remove_service(
    dataplane: &mut Dataplane,
    service: &Service,
    previous: KernelService,
) -> Result<(), DataplaneError> {
    if let (Some(name), Some(hot_type)) = (
        HotName::from_wire(service.name.as_bytes()),
        HotType::of(service.record_type),
    ) {
        dataplane.remove_hot(&name, hot_type)?;
    }
    remove_generation(dataplane, previous)
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
