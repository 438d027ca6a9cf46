//! Turning an answer policy into the kernel's precomputed map value.

use std::net::Ipv4Addr;

use dns_common::{HotA, MAX_ENDPOINTS, Selection};

/// One address with its share of the traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: Ipv4Addr,
    /// 0 gets no traffic unless every weight is 0. Policies give 0..=255;
    /// nested weighted choices multiply into larger ones.
    pub weight: u16,
}

/// What the kernel should answer for one name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HotAnswer {
    /// Every address, in an order that rotates with each query.
    RoundRobin { ttl: u32, addrs: Vec<Ipv4Addr> },
    /// One address per query, drawn by weight.
    Weighted { ttl: u32, endpoints: Vec<Endpoint> },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HotError {
    #[error("no endpoints")]
    Empty,
    #[error("{0} endpoints, the kernel holds at most {MAX_ENDPOINTS}")]
    TooMany(usize),
    #[error("weights add up to {0}, the kernel counts to 65535")]
    Overweight(u32),
}

impl HotAnswer {
    /// Precomputes the map value: wire-order TTL and addresses, cumulative
    /// weights, and how many records each answer carries.
    pub fn encode(&self) -> Result<HotA, HotError> {
        self.encode_counted(&[])
    }

    /// As [`HotAnswer::encode`], counting answers that start with endpoint
    /// `i` in `BRANCH_ANSWERS` slot `branches[i]` (0 where it is missing).
    pub fn encode_counted(&self, branches: &[u16]) -> Result<HotA, HotError> {
        let (ttl, addrs, weights, selection, answers) = match self {
            HotAnswer::RoundRobin { ttl, addrs } => (
                *ttl,
                addrs.clone(),
                vec![1u16; addrs.len()],
                Selection::RoundRobin,
                addrs.len(),
            ),
            HotAnswer::Weighted { ttl, endpoints } => {
                let addrs = endpoints.iter().map(|e| e.addr).collect::<Vec<_>>();
                let mut weights = endpoints.iter().map(|e| e.weight).collect::<Vec<_>>();
                if weights.iter().all(|&w| w == 0) {
                    weights.iter_mut().for_each(|w| *w = 1);
                }
                (*ttl, addrs, weights, Selection::Weighted, 1)
            }
        };
        if addrs.is_empty() {
            return Err(HotError::Empty);
        }
        if addrs.len() > MAX_ENDPOINTS {
            return Err(HotError::TooMany(addrs.len()));
        }

        let mut value = HotA {
            ttl: ttl.to_be_bytes(),
            total_weight: 0,
            endpoints: addrs.len() as u8,
            answers: answers as u8,
            selection: selection as u8,
            _pad: 0,
            cumulative: [u16::MAX; MAX_ENDPOINTS],
            addrs: [[0; 4]; MAX_ENDPOINTS],
            service: 0,
            branches: [0; MAX_ENDPOINTS],
        };
        let total: u32 = weights.iter().map(|&w| u32::from(w)).sum();
        if total >= u32::from(u16::MAX) {
            return Err(HotError::Overweight(total));
        }
        let mut running = 0;
        for (i, (addr, weight)) in addrs.iter().zip(weights).enumerate() {
            running += weight;
            value.cumulative[i] = running;
            value.addrs[i] = addr.octets();
            value.branches[i] = branches.get(i).copied().unwrap_or(0);
        }
        value.total_weight = total;
        Ok(value)
    }
}

/// The name's value for a client-dependent service: it sends the kernel to
/// `CLIENT_NETS` under generation `service`.
pub fn by_client(ttl: u32, service: u32) -> HotA {
    HotA {
        ttl: ttl.to_be_bytes(),
        total_weight: 0,
        endpoints: 0,
        answers: 0,
        selection: Selection::ByClient as u8,
        _pad: 0,
        cumulative: [u16::MAX; MAX_ENDPOINTS],
        addrs: [[0; 4]; MAX_ENDPOINTS],
        service,
        branches: [0; MAX_ENDPOINTS],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 1, last)
    }

    #[test]
    fn round_robin_answers_with_every_address() {
        let value = HotAnswer::RoundRobin {
            ttl: 300,
            addrs: vec![ip(1), ip(2), ip(3)],
        }
        .encode()
        .unwrap();
        assert_eq!(value.ttl, [0, 0, 1, 44]);
        assert_eq!((value.endpoints, value.answers), (3, 3));
        assert_eq!(value.selection, Selection::RoundRobin as u8);
        assert_eq!(value.addrs[2], [198, 18, 1, 3]);
    }

    #[test]
    fn weights_become_cumulative_bounds() {
        let endpoints = [(1, 10), (2, 0), (3, 30)]
            .map(|(last, weight)| Endpoint {
                addr: ip(last),
                weight,
            })
            .to_vec();
        let value = HotAnswer::Weighted { ttl: 60, endpoints }.encode().unwrap();
        assert_eq!(value.answers, 1);
        assert_eq!(value.total_weight, 40);
        assert_eq!(&value.cumulative[..4], &[10, 10, 40, u16::MAX]);
    }

    #[test]
    fn all_zero_weights_share_equally() {
        let endpoints = [1, 2]
            .map(|last| Endpoint {
                addr: ip(last),
                weight: 0,
            })
            .to_vec();
        let value = HotAnswer::Weighted { ttl: 60, endpoints }.encode().unwrap();
        assert_eq!(value.total_weight, 2);
        assert_eq!(&value.cumulative[..2], &[1, 2]);
    }

    #[test]
    fn refuses_what_the_kernel_cannot_hold() {
        let too_many = HotAnswer::RoundRobin {
            ttl: 1,
            addrs: (0..17).map(ip).collect(),
        };
        assert_eq!(too_many.encode(), Err(HotError::TooMany(17)));
        let empty = HotAnswer::RoundRobin {
            ttl: 1,
            addrs: vec![],
        };
        assert_eq!(empty.encode(), Err(HotError::Empty));
    }
}
