//! Turning an answer policy into the kernel's precomputed map value.

use std::net::IpAddr;

use dns_common::{HotA, HotAaaa, HotSet, MAX_ENDPOINTS, Selection};
use hickory_proto::rr::RecordType;

use super::signed::SigFields;

/// The record types the kernel answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HotType {
    A,
    Aaaa,
}

impl HotType {
    /// The kernel's type for a DNS record type, if it answers that type.
    pub fn of(record_type: RecordType) -> Option<HotType> {
        match record_type {
            RecordType::A => Some(HotType::A),
            RecordType::AAAA => Some(HotType::Aaaa),
            _ => None,
        }
    }

    /// The DNS record type.
    pub fn record_type(self) -> RecordType {
        match self {
            HotType::A => RecordType::A,
            HotType::Aaaa => RecordType::AAAA,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HotType::A => "A",
            HotType::Aaaa => "AAAA",
        }
    }
}

/// Runs `$body` on the `HotSet` inside a [`HotValue`], whichever its
/// address width: the fields other than the addresses are the same.
macro_rules! each_set {
    ($value:expr, |$set:ident| $body:expr) => {
        match $value {
            HotValue::A($set) => $body,
            HotValue::Aaaa($set) => $body,
        }
    };
}

/// A kernel map value of either type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HotValue {
    A(HotA),
    Aaaa(HotAaaa),
}

impl HotValue {
    pub fn hot_type(&self) -> HotType {
        match self {
            HotValue::A(_) => HotType::A,
            HotValue::Aaaa(_) => HotType::Aaaa,
        }
    }

    /// A value without endpoints: the kernel passes the query to the
    /// daemon. Written where an answer has no kernel form, so that nothing
    /// broader (a shorter client network) answers in its place.
    pub fn to_userspace(hot_type: HotType) -> HotValue {
        match hot_type {
            HotType::A => HotValue::A(HotSet::EMPTY),
            HotType::Aaaa => HotValue::Aaaa(HotSet::EMPTY),
        }
    }

    /// The name's value for a client-dependent service: it sends the kernel
    /// to the client-net trie under generation `service`.
    pub fn by_client(hot_type: HotType, service: u32) -> HotValue {
        let mut value = HotValue::to_userspace(hot_type);
        each_set!(&mut value, |set| {
            set.selection = Selection::ByClient as u8;
            set.service = service;
        });
        value
    }

    /// The value's [`dns_common::Selection`] and client-net generation.
    pub fn selection(&self) -> (u8, u32) {
        each_set!(self, |set| (set.selection, set.service))
    }

    /// Whether the kernel answers from this value (it has endpoints), or
    /// passes the query to the daemon.
    pub fn answers_in_kernel(&self) -> bool {
        each_set!(self, |set| set.endpoints > 0)
    }

    /// Sets the Client Subnet scope answers from this value carry.
    pub fn with_scope(mut self, scope: u8) -> HotValue {
        each_set!(&mut self, |set| set.scope = scope);
        self
    }

    /// Whether the name is in a signed zone ([`dns_common::SET_SIGNED`]).
    pub fn is_signed(&self) -> bool {
        each_set!(self, |set| set.flags & dns_common::SET_SIGNED != 0)
    }

    /// Sets [`dns_common::HotSet::flags`].
    pub fn with_flags(mut self, flags: u8) -> HotValue {
        each_set!(&mut self, |set| set.flags = flags);
        self
    }

    /// The TTL of the records answered from this value.
    pub fn ttl(&self) -> u32 {
        each_set!(self, |set| u32::from_be_bytes(set.ttl))
    }

    /// The value's endpoints' addresses, in order.
    pub fn addrs(&self) -> Vec<IpAddr> {
        match self {
            HotValue::A(set) => set.addrs[..usize::from(set.endpoints)]
                .iter()
                .map(|octets| IpAddr::from(*octets))
                .collect(),
            HotValue::Aaaa(set) => set.addrs[..usize::from(set.endpoints)]
                .iter()
                .map(|octets| IpAddr::from(*octets))
                .collect(),
        }
    }

    /// Its [`dns_common::Selection`], endpoints and records per answer.
    pub fn shape(&self) -> (u8, usize, usize) {
        each_set!(self, |set| (
            set.selection,
            usize::from(set.endpoints),
            usize::from(set.answers)
        ))
    }

    /// Names the signatures the kernel answers DO queries from this value
    /// with (the default: none).
    pub fn with_signatures(mut self, fields: SigFields) -> HotValue {
        each_set!(&mut self, |set| {
            set.signatures = fields.set;
            set.sig_class = fields.class;
            set.variant_mask = fields.variant_mask;
        });
        self
    }

    /// Records per answer, at least one and at most the endpoints there are.
    pub fn with_answers(mut self, answers: usize) -> HotValue {
        each_set!(&mut self, |set| {
            set.answers = answers.clamp(1, usize::from(set.endpoints)) as u8
        });
        self
    }
}

/// One address with its share of the traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: IpAddr,
    /// 0 gets no traffic unless every weight is 0. Policies give 0..=255;
    /// nested weighted choices multiply into larger ones.
    pub weight: u16,
}

/// What the kernel should answer for one name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HotAnswer {
    /// Every address, in an order that rotates with each query.
    RoundRobin { ttl: u32, addrs: Vec<IpAddr> },
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
    #[error("{0} is not an address of the record type")]
    Family(IpAddr),
}

impl HotAnswer {
    /// Precomputes the map value for records of `hot_type`: wire-order TTL
    /// and addresses, cumulative weights, and how many records each answer
    /// carries.
    pub fn encode(&self, hot_type: HotType) -> Result<HotValue, HotError> {
        self.encode_counted(hot_type, &[])
    }

    /// As [`HotAnswer::encode`], counting answers that start with endpoint
    /// `i` in `BRANCH_ANSWERS` slot `branches[i]` (0 where it is missing).
    pub fn encode_counted(
        &self,
        hot_type: HotType,
        branches: &[u16],
    ) -> Result<HotValue, HotError> {
        Ok(match hot_type {
            HotType::A => HotValue::A(self.encode_set(branches, |addr| match addr {
                IpAddr::V4(v4) => Some(v4.octets()),
                IpAddr::V6(_) => None,
            })?),
            HotType::Aaaa => HotValue::Aaaa(self.encode_set(branches, |addr| match addr {
                IpAddr::V6(v6) => Some(v6.octets()),
                IpAddr::V4(_) => None,
            })?),
        })
    }

    fn encode_set<const W: usize>(
        &self,
        branches: &[u16],
        octets: impl Fn(IpAddr) -> Option<[u8; W]>,
    ) -> Result<HotSet<W>, HotError> {
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
        let total: u32 = weights.iter().map(|&w| u32::from(w)).sum();
        if total >= u32::from(u16::MAX) {
            return Err(HotError::Overweight(total));
        }

        let mut value = HotSet::<W> {
            ttl: ttl.to_be_bytes(),
            total_weight: total,
            endpoints: addrs.len() as u8,
            answers: answers as u8,
            selection: selection as u8,
            ..HotSet::EMPTY
        };
        let mut running = 0;
        for (i, (addr, weight)) in addrs.iter().zip(weights).enumerate() {
            running += weight;
            value.cumulative[i] = running;
            value.addrs[i] = octets(*addr).ok_or(HotError::Family(*addr))?;
            value.branches[i] = branches.get(i).copied().unwrap_or(0);
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, 1, last))
    }

    fn a(value: HotValue) -> HotA {
        match value {
            HotValue::A(set) => set,
            HotValue::Aaaa(_) => panic!("an A value"),
        }
    }

    #[test]
    fn round_robin_answers_with_every_address() {
        let value = a(HotAnswer::RoundRobin {
            ttl: 300,
            addrs: vec![ip(1), ip(2), ip(3)],
        }
        .encode(HotType::A)
        .unwrap());
        assert_eq!(value.ttl, [0, 0, 1, 44]);
        assert_eq!((value.endpoints, value.answers), (3, 3));
        assert_eq!(value.selection, Selection::RoundRobin as u8);
        assert_eq!(value.addrs[2], [198, 18, 1, 3]);
    }

    #[test]
    fn aaaa_sets_carry_sixteen_byte_addresses() {
        let v6: IpAddr = "2001:db8::7".parse::<Ipv6Addr>().unwrap().into();
        let answer = HotAnswer::RoundRobin {
            ttl: 60,
            addrs: vec![v6],
        };
        match answer.encode(HotType::Aaaa).unwrap() {
            HotValue::Aaaa(set) => assert_eq!(IpAddr::from(set.addrs[0]), v6),
            other => panic!("{other:?}"),
        }
        assert_eq!(answer.encode(HotType::A), Err(HotError::Family(v6)));
    }

    #[test]
    fn weights_become_cumulative_bounds() {
        let endpoints = [(1, 10), (2, 0), (3, 30)]
            .map(|(last, weight)| Endpoint {
                addr: ip(last),
                weight,
            })
            .to_vec();
        let value = a(HotAnswer::Weighted { ttl: 60, endpoints }
            .encode(HotType::A)
            .unwrap());
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
        let value = a(HotAnswer::Weighted { ttl: 60, endpoints }
            .encode(HotType::A)
            .unwrap());
        assert_eq!(value.total_weight, 2);
        assert_eq!(&value.cumulative[..2], &[1, 2]);
    }

    #[test]
    fn refuses_what_the_kernel_cannot_hold() {
        let too_many = HotAnswer::RoundRobin {
            ttl: 1,
            addrs: (0..17).map(ip).collect(),
        };
        assert_eq!(too_many.encode(HotType::A), Err(HotError::TooMany(17)));
        let empty = HotAnswer::RoundRobin {
            ttl: 1,
            addrs: vec![],
        };
        assert_eq!(empty.encode(HotType::A), Err(HotError::Empty));
    }
}
