//! The fleet's keys under its prefix, and what each holds:
//!
//! | key | value |
//! |---|---|
//! | `policy` | the policy file's text |
//! | `overrides` | the operator's drains and weights (JSON) |
//! | `zones/ORIGIN` | a zone served from a file (`{"file": ...}`) or removed (`{"file": null}`) |
//! | `instances/POOL/ADDRESS` | a registered pool's instance (JSON, as the API's) |
//! | `load/POOL/ADDRESS` | a pushed load and when it was reported (JSON, [`PushedLoad`]) |
//! | `health/NODE/POOL/ADDRESS` | `up` or `down`: NODE's verdict, under its lease |

use std::{net::IpAddr, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::types::LoadValue;

/// A key of the fleet, without the prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FleetKey {
    Policy,
    Overrides,
    Zone(String),
    Instance {
        pool: String,
        address: IpAddr,
    },
    Load {
        pool: String,
        address: IpAddr,
    },
    Health {
        node: String,
        pool: String,
        address: IpAddr,
    },
}

const POLICY: &str = "policy";
const OVERRIDES: &str = "overrides";
const ZONES: &str = "zones/";
const INSTANCES: &str = "instances/";
const LOAD: &str = "load/";
/// Where the nodes' verdicts live.
pub const HEALTH: &str = "health/";

impl FleetKey {
    /// The whole key under `prefix`.
    pub fn path(&self, prefix: &str) -> String {
        match self {
            FleetKey::Policy => format!("{prefix}{POLICY}"),
            FleetKey::Overrides => format!("{prefix}{OVERRIDES}"),
            FleetKey::Zone(origin) => format!("{prefix}{ZONES}{origin}"),
            FleetKey::Instance { pool, address } => format!("{prefix}{INSTANCES}{pool}/{address}"),
            FleetKey::Load { pool, address } => format!("{prefix}{LOAD}{pool}/{address}"),
            FleetKey::Health {
                node,
                pool,
                address,
            } => format!("{prefix}{HEALTH}{node}/{pool}/{address}"),
        }
    }

    /// The key `path` names under `prefix`; `None` for anything else.
    pub fn parse(prefix: &str, path: &str) -> Option<FleetKey> {
        let rest = path.strip_prefix(prefix)?;
        let pool_and_address = |rest: &str| {
            let (pool, address) = rest.rsplit_once('/')?;
            Some((pool.to_owned(), address.parse().ok()?))
        };
        if rest == POLICY {
            Some(FleetKey::Policy)
        } else if rest == OVERRIDES {
            Some(FleetKey::Overrides)
        } else if let Some(origin) = rest.strip_prefix(ZONES) {
            Some(FleetKey::Zone(origin.to_owned()))
        } else if let Some(rest) = rest.strip_prefix(INSTANCES) {
            let (pool, address) = pool_and_address(rest)?;
            Some(FleetKey::Instance { pool, address })
        } else if let Some(rest) = rest.strip_prefix(LOAD) {
            let (pool, address) = pool_and_address(rest)?;
            Some(FleetKey::Load { pool, address })
        } else {
            let (node, rest) = rest.strip_prefix(HEALTH)?.split_once('/')?;
            let (pool, address) = pool_and_address(rest)?;
            Some(FleetKey::Health {
                node: node.to_owned(),
                pool,
                address,
            })
        }
    }
}

/// What `zones/ORIGIN` holds: the file each node serves the zone from (each
/// node has its own copy there, by zone transfer or by hand), or `None`
/// for a zone removed from the fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneAssignment {
    pub file: Option<PathBuf>,
}

/// What `load/POOL/ADDRESS` holds: the load as pushed, and when (Unix
/// seconds), so that a node reading it later (one that starts, or comes
/// back to etcd) counts its age against the pool's expiry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushedLoad {
    pub load: LoadValue,
    pub reported: f64,
}

/// A verdict as `health/...` holds it.
pub fn verdict_value(up: bool) -> &'static str {
    if up { "up" } else { "down" }
}

/// The verdict `value` says; `None` for anything but `up` and `down`.
pub fn parse_verdict(value: &[u8]) -> Option<bool> {
    match value {
        b"up" => Some(true),
        b"down" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_reads_back_as_written_and_others_are_ignored() {
        let address: IpAddr = "2001:db8::7".parse().unwrap();
        for key in [
            FleetKey::Policy,
            FleetKey::Overrides,
            FleetKey::Zone("example.com.".into()),
            FleetKey::Instance {
                pool: "web".into(),
                address,
            },
            FleetKey::Load {
                pool: "web".into(),
                address,
            },
            FleetKey::Health {
                node: "node-a".into(),
                pool: "web".into(),
                address,
            },
        ] {
            let path = key.path("/dnslb/");
            assert_eq!(FleetKey::parse("/dnslb/", &path), Some(key), "{path}");
        }
        for other in [
            "/other/policy",
            "/dnslb/unknown",
            "/dnslb/health/a/web/not-an-ip",
        ] {
            assert_eq!(FleetKey::parse("/dnslb/", other), None, "{other}");
        }
        assert_eq!(parse_verdict(verdict_value(false).as_bytes()), Some(false));
    }
}
