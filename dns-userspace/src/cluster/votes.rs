//! The fleet's health verdict, as Route 53 makes it from checkers in many
//! places: an endpoint is healthy while at least `min_fraction` of the
//! live nodes that check it see it healthy. A node counts while its lease
//! holds its verdicts in the store; this node's own verdict counts as it
//! is now, not as last published.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

/// The other nodes' verdicts, by pool and endpoint address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetVotes {
    votes: HashMap<(String, IpAddr), BTreeMap<String, bool>>,
}

impl FleetVotes {
    /// Records `node`'s verdict on `address` in `pool` (`None`: it has
    /// none any more, its key deleted or its lease expired).
    pub fn set(&mut self, node: &str, pool: &str, address: IpAddr, up: Option<bool>) {
        let key = (pool.to_owned(), address);
        match up {
            Some(up) => {
                self.votes
                    .entry(key)
                    .or_default()
                    .insert(node.to_owned(), up);
            }
            None => {
                if let Some(nodes) = self.votes.get_mut(&key) {
                    nodes.remove(node);
                    if nodes.is_empty() {
                        self.votes.remove(&key);
                    }
                }
            }
        }
    }

    /// The fleet's verdict on `address` in `pool`, this node's own being
    /// `local`.
    pub fn verdict(&self, pool: &str, address: IpAddr, local: bool, min_fraction: f64) -> bool {
        let others = self.votes.get(&(pool.to_owned(), address));
        let (up, all) = others
            .into_iter()
            .flatten()
            .fold((usize::from(local), 1usize), |(up, all), (_, &their)| {
                (up + usize::from(their), all + 1)
            });
        // Counts of nodes are small: the products are exact.
        up as f64 >= min_fraction * all as f64
    }

    /// How many other nodes have a verdict on `address` in `pool`.
    pub fn checkers(&self, pool: &str, address: IpAddr) -> usize {
        self.votes
            .get(&(pool.to_owned(), address))
            .map_or(0, BTreeMap::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = "web";

    fn address() -> IpAddr {
        "198.18.0.101".parse().unwrap()
    }

    #[test]
    fn one_node_alone_decides_by_its_own_probes() {
        let votes = FleetVotes::default();
        assert!(votes.verdict(WEB, address(), true, 0.18));
        assert!(!votes.verdict(WEB, address(), false, 0.18));
    }

    #[test]
    fn route_53_figure_keeps_an_endpoint_that_one_node_in_three_still_sees() {
        let mut votes = FleetVotes::default();
        votes.set("b", WEB, address(), Some(false));
        votes.set("c", WEB, address(), Some(false));
        // 1 of 3 is 0.33, above 0.18; 0 of 3 is not.
        assert!(votes.verdict(WEB, address(), true, 0.18));
        assert!(!votes.verdict(WEB, address(), false, 0.18));
    }

    #[test]
    fn with_half_two_nodes_of_three_that_cannot_reach_it_take_it_out() {
        let mut votes = FleetVotes::default();
        votes.set("b", WEB, address(), Some(true));
        votes.set("c", WEB, address(), Some(true));
        assert!(votes.verdict(WEB, address(), false, 0.5), "2 of 3 see it");
        votes.set("b", WEB, address(), Some(false));
        assert!(!votes.verdict(WEB, address(), false, 0.5), "1 of 3 sees it");
        assert!(votes.verdict(WEB, address(), true, 0.5), "2 of 3 see it");
    }

    #[test]
    fn a_node_whose_lease_expired_no_longer_counts() {
        let mut votes = FleetVotes::default();
        votes.set("b", WEB, address(), Some(false));
        votes.set("c", WEB, address(), Some(false));
        assert!(!votes.verdict(WEB, address(), true, 0.5));
        votes.set("b", WEB, address(), None);
        votes.set("c", WEB, address(), None);
        assert_eq!(votes.checkers(WEB, address()), 0);
        assert!(votes.verdict(WEB, address(), true, 0.5));
    }
}
