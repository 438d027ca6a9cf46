use std::net::{IpAddr, Ipv4Addr};

use super::*;

fn addr(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 1, last))
}

fn pool(name: &str, weights: &[(u8, u8)]) -> Pool {
    Pool {
        name: name.into(),
        endpoints: weights
            .iter()
            .map(|&(last, weight)| PoolEndpoint {
                weight,
                ..PoolEndpoint::new(addr(last))
            })
            .collect(),
        check: None,
    }
}

/// Everything up but the listed `(pool, endpoint)` pairs.
struct Down(Vec<(usize, usize)>);

impl Health for Down {
    fn is_up(&self, pool: usize, endpoint: usize) -> bool {
        !self.0.contains(&(pool, endpoint))
    }
}

fn leaf(pool: usize, pick: Pick) -> Policy {
    Policy::Pool {
        pool,
        pick,
        branch: pool as u16 + 1,
    }
}

fn service(policy: Policy, fail_closed: bool) -> Service {
    Service {
        label: "s".into(),
        name: WireName::from(&b"\x01s\x00"[..]),
        record_type: RecordType::A,
        ttl: 60,
        fail_closed,
        policy,
        signed: false,
    }
}

/// Counts how often each address starts an answer over `draws` draws.
fn tally(draw: &Draw, draws: usize) -> std::collections::HashMap<IpAddr, usize> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut counts = std::collections::HashMap::new();
    for rotation in 0..draws {
        if let Some(first) = draw.choose(rotation, rng.u32(..)).first() {
            *counts.entry(first.addr).or_default() += 1;
        }
    }
    counts
}

/// Pearson's chi-square of `observed` against `expected` shares; with
/// k - 1 <= 3 degrees of freedom, 16.3 is the 0.1% critical value, so an
/// honest weighted draw fails this about once in a thousand seeds (the seed
/// is fixed: it passes or fails the same way every run).
fn assert_shares(counts: &std::collections::HashMap<IpAddr, usize>, expected: &[(IpAddr, f64)]) {
    let total: usize = counts.values().sum();
    let chi_square: f64 = expected
        .iter()
        .map(|(addr, share)| {
            let want = share * total as f64;
            let got = *counts.get(addr).unwrap_or(&0) as f64;
            (got - want).powi(2) / want
        })
        .sum();
    assert!(
        chi_square < 16.3,
        "chi-square {chi_square:.1}: {counts:?} vs {expected:?}"
    );
    let listed: usize = expected
        .iter()
        .map(|(a, _)| counts.get(a).unwrap_or(&0))
        .sum();
    assert_eq!(
        listed, total,
        "draws outside the expected endpoints: {counts:?}"
    );
}

#[test]
fn weighted_draws_follow_the_weights_and_zero_gets_nothing() {
    let pools = [pool("p", &[(1, 1), (2, 0), (3, 3)])];
    let draw = leaf(0, Pick::ByWeight).draw(&pools, &AllUp, None);
    let counts = tally(&draw, 40_000);
    assert_eq!(counts.get(&addr(2)), None, "weight 0 is never drawn");
    assert_shares(&counts, &[(addr(1), 0.25), (addr(3), 0.75)]);

    // The kernel form carries the same shares.
    let Some(Flat::Weighted(flat)) = draw.flatten() else {
        panic!("a weighted pool flattens: {draw:?}");
    };
    let weights: Vec<u16> = flat.iter().map(|(w, _)| *w).collect();
    assert_eq!(weights, [15000, 45000]);
}

#[test]
fn zero_weights_serve_only_when_all_are_zero_or_the_rest_are_down() {
    let pools = [pool("p", &[(1, 0), (2, 0)])];
    let draw = leaf(0, Pick::ByWeight).draw(&pools, &AllUp, None);
    assert_shares(&tally(&draw, 20_000), &[(addr(1), 0.5), (addr(2), 0.5)]);

    let pools = [pool("p", &[(1, 5), (2, 0)])];
    let draw = leaf(0, Pick::ByWeight).draw(&pools, &Down(vec![(0, 0)]), None);
    assert_eq!(tally(&draw, 100).keys().collect::<Vec<_>>(), [&addr(2)]);
}

#[test]
fn weighted_branches_nest_and_flatten_into_one_kernel_draw() {
    let pools = [pool("a", &[(1, 1), (2, 1)]), pool("b", &[(3, 1)])];
    let policy = Policy::Weighted(vec![
        (3, leaf(0, Pick::ByWeight)),
        (1, leaf(1, Pick::ByWeight)),
    ]);
    let draw = policy.draw(&pools, &AllUp, None);
    assert_shares(
        &tally(&draw, 40_000),
        &[(addr(1), 0.375), (addr(2), 0.375), (addr(3), 0.25)],
    );
    let Some(Flat::Weighted(flat)) = draw.flatten() else {
        panic!("nested weights flatten");
    };
    let weights: Vec<(u16, IpAddr, u16)> =
        flat.iter().map(|(w, d)| (*w, d.addr, d.branch)).collect();
    assert_eq!(
        weights,
        [
            (22500, addr(1), 1),
            (22500, addr(2), 1),
            (15000, addr(3), 2)
        ]
    );

    // A weighted choice between whole sets has no kernel form.
    let sets = Policy::Weighted(vec![
        (1, leaf(0, Pick::Healthy { answers: 2 })),
        (1, leaf(1, Pick::Healthy { answers: 2 })),
    ]);
    assert_eq!(sets.draw(&pools, &AllUp, None).flatten(), None);
}

#[test]
fn failover_uses_the_secondary_only_while_the_primary_is_down() {
    let pools = [
        pool("primary", &[(1, 1), (2, 1)]),
        pool("secondary", &[(9, 1)]),
    ];
    let policy = Policy::Failover {
        primary: Box::new(leaf(0, Pick::ByWeight)),
        secondary: Box::new(leaf(1, Pick::Healthy { answers: 8 })),
    };
    let firsts = |health: &dyn Health| {
        let mut firsts: Vec<IpAddr> = tally(&policy.draw(&pools, health, None), 200)
            .into_keys()
            .collect();
        firsts.sort();
        firsts
    };
    assert_eq!(firsts(&AllUp), [addr(1), addr(2)]);
    assert_eq!(firsts(&Down(vec![(0, 0)])), [addr(2)]);
    assert_eq!(firsts(&Down(vec![(0, 0), (0, 1)])), [addr(9)]);

    // Everything down: Route 53 answers with everything, unless told to
    // fail closed.
    let all_down = Down(vec![(0, 0), (0, 1), (1, 0)]);
    let open = service(policy.clone(), false).draw(&pools, &all_down, None);
    assert_eq!(tally(&open, 200).len(), 2, "the primary, as if healthy");
    let closed = service(policy, true).draw(&pools, &all_down, None);
    assert!(closed.is_empty());
}

#[test]
fn multivalue_and_round_robin_rotate_healthy_endpoints() {
    let endpoints: Vec<(u8, u8)> = (1..=10).map(|i| (i, 1)).collect();
    let pools = [pool("p", &endpoints)];
    let multivalue = leaf(
        0,
        Pick::Healthy {
            answers: MULTIVALUE_ANSWERS,
        },
    );
    let draw = multivalue.draw(&pools, &Down(vec![(0, 4)]), None);
    let first = draw.choose(0, 0);
    let second = draw.choose(1, 0);
    assert_eq!(first.len(), 8);
    assert!(
        !first.iter().any(|d| d.addr == addr(5)),
        "the down endpoint is left out"
    );
    assert_eq!(first[1], second[0], "the next answer starts one further");

    let two = leaf(0, Pick::Healthy { answers: 2 }).draw(&pools, &AllUp, None);
    assert_eq!(
        two.choose(9, 0).iter().map(|d| d.addr).collect::<Vec<_>>(),
        [addr(10), addr(1)]
    );
    assert_eq!(
        two.flatten(),
        Some(Flat::Rotate {
            endpoints: (1..=10)
                .map(|i| Drawn {
                    addr: addr(i),
                    branch: 1
                })
                .collect(),
            answers: 2
        })
    );
}

#[test]
fn simple_answers_with_everything_whatever_its_health() {
    let pools = [pool("p", &[(1, 1), (2, 1)])];
    let draw = leaf(0, Pick::Every).draw(&pools, &Down(vec![(0, 0), (0, 1)]), None);
    assert_eq!(draw.choose(0, 0).len(), 2);
}

#[test]
fn client_networks_pick_branches_fall_back_and_set_the_scope() {
    let pools = [
        pool("eu", &[(1, 1)]),
        pool("us", &[(2, 1)]),
        pool("other", &[(3, 1)]),
    ];
    let mut table = ClientTable::new(vec![2]);
    table.insert(parse_network("198.18.0.0/24").unwrap(), vec![0, 2]);
    table.insert(parse_network("198.18.1.0/24").unwrap(), vec![1, 0, 2]);
    let policy = Policy::ByClient {
        table,
        branches: vec![
            leaf(0, Pick::Healthy { answers: 1 }),
            leaf(1, Pick::Healthy { answers: 1 }),
            leaf(2, Pick::Healthy { answers: 1 }),
        ],
    };
    let client = |text: &str| ClientNet::host(text.parse().unwrap());
    let first = |health: &dyn Health, c: &str| {
        policy.draw(&pools, health, Some(client(c))).choose(0, 0)[0].addr
    };
    assert_eq!(first(&AllUp, "198.18.0.9"), addr(1));
    assert_eq!(first(&AllUp, "198.18.1.9"), addr(2));
    assert_eq!(first(&AllUp, "192.0.2.1"), addr(3));
    // The US branch down: its clients fall back to the next in their list.
    assert_eq!(first(&Down(vec![(1, 0)]), "198.18.1.9"), addr(1));
    assert_eq!(policy.scope(client("198.18.1.9")), 24);
    assert_eq!(policy.scope(client("192.0.2.1")), 0);
    assert!(policy.depends_on_client());
    let mut networks = std::collections::HashSet::new();
    policy.client_networks(&mut networks);
    assert_eq!(networks.len(), 2);
}

#[test]
fn shares_scale_weights_inside_nested_policies_and_reach_the_kernel_draw() {
    let mut pools = [pool("a", &[(1, 2), (2, 2)]), pool("b", &[(3, 1)])];
    // What load leaves of each: all of .1's weight, a quarter of .2's.
    pools[0].endpoints[1].share = 0.25;
    let policy = Policy::Failover {
        primary: Box::new(Policy::Weighted(vec![
            (1, leaf(0, Pick::ByWeight)),
            (1, leaf(1, Pick::ByWeight)),
        ])),
        secondary: Box::new(leaf(1, Pick::Every)),
    };
    let draw = policy.draw(&pools, &AllUp, None);
    // Half to pool b; pool a's half split 2 : 0.5.
    assert_shares(
        &tally(&draw, 40_000),
        &[(addr(1), 0.4), (addr(2), 0.1), (addr(3), 0.5)],
    );
    let Some(Flat::Weighted(flat)) = draw.flatten() else {
        panic!("nested weights flatten");
    };
    let weights: Vec<(u16, IpAddr)> = flat.iter().map(|(w, d)| (*w, d.addr)).collect();
    assert_eq!(
        weights,
        [(24000, addr(1)), (6000, addr(2)), (30000, addr(3))]
    );
    // A tiny share keeps a positive weight (0 would shed it).
    pools[0].endpoints[1].share = 0.0001;
    assert_eq!(pools[0].endpoints[1].draw_weight(), 1);
    pools[0].endpoints[1].share = 0.0;
    assert_eq!(pools[0].endpoints[1].draw_weight(), 0);
}
