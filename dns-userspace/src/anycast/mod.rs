//! Anycast: the node announces its service addresses by owning them on a
//! dummy interface, which a BGP daemon on the host (BIRD's `direct`
//! protocol) exports as routes, and withdraws them by removing them. It
//! owns them while it serves, is not withdrawn by the operator, and its
//! own checks see a healthy endpoint in each upstream pool; a stopping
//! daemon withdraws first and keeps answering for the grace period, while
//! the routers move the traffic away.
//!
//! `netlink` changes the interface; the daemon (`daemon::anycast`) decides
//! when.

pub mod netlink;

use std::{net::IpAddr, time::Duration};

/// The policy file's `[anycast]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnycastSpec {
    /// The service addresses, each announced as a host route (/32, /128).
    pub addresses: Vec<IpAddr>,
    /// The dummy interface that holds them while announced (made if
    /// missing).
    pub interface: String,
    /// Pools that must each have an endpoint this node sees healthy.
    pub pools: Vec<String>,
    /// How long a stopping daemon goes on answering after it withdrew.
    pub grace: Duration,
}

pub const DEFAULT_INTERFACE: &str = "dnslb0";
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);

/// Why the addresses are announced or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Announce,
    /// The operator withdrew this node (`dnslb anycast withdraw`).
    Withdrawn,
    /// An upstream pool has no endpoint this node sees healthy.
    Unhealthy(String),
    /// The daemon is stopping.
    Stopping,
}

impl Decision {
    /// `unhealthy`: the first of the spec's pools without a healthy
    /// endpoint, if any.
    pub fn make(stopping: bool, withdrawn: bool, unhealthy: Option<&str>) -> Decision {
        match (stopping, withdrawn, unhealthy) {
            (true, _, _) => Decision::Stopping,
            (false, true, _) => Decision::Withdrawn,
            (false, false, Some(pool)) => Decision::Unhealthy(pool.to_owned()),
            (false, false, None) => Decision::Announce,
        }
    }

    pub fn announces(&self) -> bool {
        *self == Decision::Announce
    }

    /// In words, for status and logs.
    pub fn reason(&self) -> String {
        match self {
            Decision::Announce => "serving and healthy".to_owned(),
            Decision::Withdrawn => "withdrawn by the operator".to_owned(),
            Decision::Unhealthy(pool) => format!("no healthy endpoint in pool `{pool}`"),
            Decision::Stopping => "stopping".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopping_outranks_the_operator_who_outranks_health() {
        assert_eq!(Decision::make(true, true, Some("web")), Decision::Stopping);
        assert_eq!(
            Decision::make(false, true, Some("web")),
            Decision::Withdrawn
        );
        assert_eq!(
            Decision::make(false, false, Some("web")),
            Decision::Unhealthy("web".into())
        );
        assert!(Decision::make(false, false, None).announces());
        assert!(!Decision::make(false, true, None).announces());
    }
}
