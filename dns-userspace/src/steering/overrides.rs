//! The operator's overrides of endpoints, made through the control API:
//! drained endpoints leave the answers as if unhealthy (their checks go on),
//! and weights replace the policy file's. They outlive reloads of the policy
//! file until undone; an override whose endpoint leaves the file goes with it.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

pub use crate::api::types::EndpointRef;
use crate::api::types::OverridesInForce;
use crate::policy::Pool;

/// Whether `endpoint` names the endpoint `address` of `pool`.
fn matches(endpoint: &EndpointRef, pool: &Pool, address: IpAddr) -> bool {
    endpoint.address == address && endpoint.pool.as_ref().is_none_or(|name| *name == pool.name)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OverrideError {
    #[error("no pool named `{0}`")]
    NoPool(String),
    #[error("no endpoint {address} in {}", .pool.as_deref().map_or("any pool".to_owned(), |p| format!("pool `{p}`")))]
    NoEndpoint {
        address: IpAddr,
        pool: Option<String>,
    },
}

/// As a fleet's store keeps them: JSON, the weights as pairs (a JSON
/// object's keys are strings, and these are endpoints).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Overrides {
    #[serde(default)]
    drained: BTreeSet<EndpointRef>,
    #[serde(default, with = "pairs")]
    weights: BTreeMap<EndpointRef, u8>,
}

mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::EndpointRef;

    pub fn serialize<S: Serializer>(
        weights: &BTreeMap<EndpointRef, u8>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        weights.iter().collect::<Vec<_>>().serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<EndpointRef, u8>, D::Error> {
        Ok(Vec::<(EndpointRef, u8)>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

impl Overrides {
    /// How many drains and weights are in force.
    pub fn in_force(&self) -> OverridesInForce {
        OverridesInForce {
            drained: self.drained.len(),
            weights: self.weights.len(),
        }
    }

    /// Drains `endpoint`, which must exist in `pools`.
    pub fn drain(&mut self, endpoint: EndpointRef, pools: &[Pool]) -> Result<(), OverrideError> {
        check_exists(&endpoint, pools)?;
        self.drained.insert(endpoint);
        Ok(())
    }

    /// Undoes every drain that names this address (in this pool, when one
    /// is given).
    pub fn undrain(&mut self, endpoint: &EndpointRef, pools: &[Pool]) -> Result<(), OverrideError> {
        check_exists(endpoint, pools)?;
        self.drained.retain(|drained| !covers(endpoint, drained));
        Ok(())
    }

    /// Gives `endpoint` the weight `weight` in place of the file's.
    pub fn set_weight(
        &mut self,
        endpoint: EndpointRef,
        weight: u8,
        pools: &[Pool],
    ) -> Result<(), OverrideError> {
        check_exists(&endpoint, pools)?;
        self.weights.retain(|set, _| !covers(&endpoint, set));
        self.weights.insert(endpoint, weight);
        Ok(())
    }

    /// Undoes every weight override that names this address (in this
    /// pool, when one is given): the policy file's weight applies again.
    pub fn clear_weight(
        &mut self,
        endpoint: &EndpointRef,
        pools: &[Pool],
    ) -> Result<(), OverrideError> {
        check_exists(endpoint, pools)?;
        self.weights.retain(|set, _| !covers(endpoint, set));
        Ok(())
    }

    /// Whether endpoint `index` of `pool` is drained.
    pub fn is_drained(&self, pool: &Pool, index: usize) -> bool {
        pool.endpoints
            .get(index)
            .is_some_and(|endpoint| self.drained.iter().any(|d| matches(d, pool, endpoint.addr)))
    }

    /// The weight override of endpoint `address` of `pool`, if any; one
    /// naming the pool wins over one for every pool.
    pub fn weight(&self, pool: &Pool, address: IpAddr) -> Option<u8> {
        let matching = || {
            self.weights
                .iter()
                .filter(move |(e, _)| matches(e, pool, address))
        };
        matching()
            .find(|(e, _)| e.pool.is_some())
            .or_else(|| matching().next())
            .map(|(_, weight)| *weight)
    }

    /// `pools` with the weight overrides applied.
    pub fn weigh(&self, pools: &[Pool]) -> Vec<Pool> {
        pools
            .iter()
            .map(|pool| {
                let mut pool = pool.clone();
                for index in 0..pool.endpoints.len() {
                    let address = pool.endpoints[index].addr;
                    if let Some(weight) = self.weight(&pool, address) {
                        pool.endpoints[index].weight = weight;
                    }
                }
                pool
            })
            .collect()
    }

    /// Drops the overrides whose endpoint `pools` no longer has.
    pub fn retain_known(&mut self, pools: &[Pool]) {
        self.drained.retain(|e| check_exists(e, pools).is_ok());
        self.weights.retain(|e, _| check_exists(e, pools).is_ok());
    }
}

/// Whether an undo naming `given` undoes `set`: the same address, and the
/// same pool unless `given` names none.
fn covers(given: &EndpointRef, set: &EndpointRef) -> bool {
    given.address == set.address && (given.pool.is_none() || given.pool == set.pool)
}

fn check_exists(endpoint: &EndpointRef, pools: &[Pool]) -> Result<(), OverrideError> {
    if let Some(name) = &endpoint.pool
        && !pools.iter().any(|pool| pool.name == *name)
    {
        return Err(OverrideError::NoPool(name.clone()));
    }
    let found = pools.iter().any(|pool| {
        pool.endpoints
            .iter()
            .any(|e| matches(endpoint, pool, e.addr))
    });
    if found {
        Ok(())
    } else {
        Err(OverrideError::NoEndpoint {
            address: endpoint.address,
            pool: endpoint.pool.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PoolEndpoint;

    fn pools() -> Vec<Pool> {
        let endpoint = |addr: &str, weight| PoolEndpoint {
            weight,
            ..PoolEndpoint::new(addr.parse().unwrap())
        };
        vec![
            Pool {
                name: "a".into(),
                endpoints: vec![endpoint("198.18.0.1", 1), endpoint("198.18.0.2", 1)],
                check: None,
            },
            Pool {
                name: "b".into(),
                endpoints: vec![endpoint("198.18.0.1", 5)],
                check: None,
            },
        ]
    }

    fn at(address: &str, pool: Option<&str>) -> EndpointRef {
        EndpointRef {
            address: address.parse().unwrap(),
            pool: pool.map(str::to_owned),
        }
    }

    #[test]
    fn drains_by_address_or_by_pool() {
        let pools = pools();
        let mut overrides = Overrides::default();
        overrides
            .drain(at("198.18.0.1", Some("b")), &pools)
            .unwrap();
        assert!(!overrides.is_drained(&pools[0], 0));
        assert!(overrides.is_drained(&pools[1], 0));
        overrides.drain(at("198.18.0.1", None), &pools).unwrap();
        assert!(overrides.is_drained(&pools[0], 0));
        assert!(!overrides.is_drained(&pools[0], 1));
        // Undoing without a pool undoes both.
        overrides.undrain(&at("198.18.0.1", None), &pools).unwrap();
        assert!(!overrides.is_drained(&pools[1], 0));
        assert_eq!(overrides, Overrides::default());
    }

    #[test]
    fn unknown_endpoints_change_nothing() {
        let pools = pools();
        let mut overrides = Overrides::default();
        assert_eq!(
            overrides.drain(at("198.18.0.9", None), &pools),
            Err(OverrideError::NoEndpoint {
                address: "198.18.0.9".parse().unwrap(),
                pool: None
            })
        );
        assert_eq!(
            overrides
                .drain(at("198.18.0.2", Some("b")), &pools)
                .unwrap_err()
                .to_string(),
            "no endpoint 198.18.0.2 in pool `b`"
        );
        assert_eq!(
            overrides.set_weight(at("198.18.0.1", Some("c")), 3, &pools),
            Err(OverrideError::NoPool("c".into()))
        );
        assert_eq!(overrides, Overrides::default());
    }

    #[test]
    fn weights_replace_the_file_and_a_pool_wins() {
        let pools = pools();
        let mut overrides = Overrides::default();
        overrides
            .set_weight(at("198.18.0.1", None), 0, &pools)
            .unwrap();
        overrides
            .set_weight(at("198.18.0.1", Some("b")), 9, &pools)
            .unwrap();
        let weighed = overrides.weigh(&pools);
        assert_eq!(weighed[0].endpoints[0].weight, 0);
        assert_eq!(weighed[0].endpoints[1].weight, 1);
        assert_eq!(weighed[1].endpoints[0].weight, 9);
        assert_eq!(
            overrides.in_force(),
            OverridesInForce {
                drained: 0,
                weights: 2
            }
        );

        // Cleared in one pool, then everywhere: the file's weights again.
        overrides
            .clear_weight(&at("198.18.0.1", Some("b")), &pools)
            .unwrap();
        assert_eq!(overrides.weigh(&pools)[1].endpoints[0].weight, 0);
        overrides
            .clear_weight(&at("198.18.0.1", None), &pools)
            .unwrap();
        assert_eq!(overrides, Overrides::default());
    }

    #[test]
    fn overrides_of_vanished_endpoints_go() {
        let mut pools = pools();
        let mut overrides = Overrides::default();
        overrides
            .drain(at("198.18.0.2", Some("a")), &pools)
            .unwrap();
        pools[0].endpoints.pop();
        overrides.retain_known(&pools);
        assert_eq!(overrides, Overrides::default());
    }
}
