//! Kernel time per packet through `BPF_PROG_TEST_RUN` in live-frame mode:
//! the floor program against dnslb's program on a hit, a miss, a weighted
//! pick and a 250-byte name. Each dnslb case is checked, by its counters,
//! to have taken the path it claims to measure.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use anyhow::{Context, ensure};
use aya::{EbpfLoader, programs::Xdp};
use dns_common::{Counter, HotName, names};
use dnslb::dataplane::{
    Dataplane, DataplaneOptions, EBPF_OBJECT, Endpoint, HotAnswer, HotType, time_runs,
};
use dnslb_tests::frame::{Opt, QueryFrame, wire_name};

use crate::responders::FLOOR_OBJECT;

pub struct MicroResult {
    pub label: &'static str,
    pub per_run: Duration,
}

const LONG_NAME_LABELS: usize = 4;

/// A name of 250 bytes on the wire: four 60-byte labels and a short one.
fn long_name() -> String {
    let mut labels: Vec<String> = (0..LONG_NAME_LABELS)
        .map(|i| format!("{i}").repeat(60))
        .collect();
    labels.push("long".to_string());
    let name = labels.join(".");
    debug_assert_eq!(wire_name(&name).len(), 250);
    name
}

pub fn run(runs: u32) -> anyhow::Result<Vec<MicroResult>> {
    let hit = QueryFrame::a("www.bench.test").build();

    let mut results = Vec::new();
    for (label, object, name) in [
        (
            "XDP_PASS only (the cost of timing a run)",
            EBPF_OBJECT,
            names::PASS_PROGRAM,
        ),
        ("floor", FLOOR_OBJECT, "floor"),
    ] {
        let mut ebpf = EbpfLoader::new().load(object)?;
        let program: &mut Xdp = ebpf
            .program_mut(name)
            .context("program missing")?
            .try_into()?;
        program.load()?;
        results.push(MicroResult {
            label,
            per_run: time_runs(program, &hit, runs)?,
        });
    }

    let mut dataplane = Dataplane::load(DataplaneOptions::new(53, 1232, 16))?;
    let addrs: Vec<IpAddr> = (1..=3)
        .map(|i| IpAddr::V4(Ipv4Addr::new(198, 18, 10, i)))
        .collect();
    let addrs6: Vec<IpAddr> = (1..=3)
        .map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 10, 0, 0, 0, i)))
        .collect();
    let endpoints = addrs
        .iter()
        .map(|&addr| Endpoint { addr, weight: 10 })
        .collect();
    let long = long_name();
    let round_robin = |addrs: &[IpAddr]| HotAnswer::RoundRobin {
        ttl: 300,
        addrs: addrs.to_vec(),
    };
    let hot = [
        ("www.bench.test", HotType::A, round_robin(&addrs)),
        ("www.bench.test", HotType::Aaaa, round_robin(&addrs6)),
        (
            "weighted.bench.test",
            HotType::A,
            HotAnswer::Weighted {
                ttl: 300,
                endpoints,
            },
        ),
        (long.as_str(), HotType::A, round_robin(&addrs[..1])),
    ];
    for (name, hot_type, answer) in hot {
        let key = HotName::from_wire(&wire_name(name)).context("bad benchmark name")?;
        dataplane.set_hot(&key, &answer.encode(hot_type)?)?;
    }
    // What a validating resolver sends: DO, a cookie, a Client Subnet.
    let resolver_opt = Opt::plain(1232)
        .dnssec()
        .cookie([7; 8], &[])
        .subnet(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 0)), 24);
    let cases = [
        ("dnslb hit (3 records, round robin)", hit, Counter::Answered),
        (
            "dnslb miss (name not hot)",
            QueryFrame::a("miss.bench.test").build(),
            Counter::PassNotHot,
        ),
        (
            "dnslb weighted pick",
            QueryFrame::a("weighted.bench.test").build(),
            Counter::Answered,
        ),
        (
            "dnslb hit, 250-byte name",
            QueryFrame::a(&long).build(),
            Counter::Answered,
        ),
        (
            "dnslb hit, DO + cookie + Client Subnet",
            QueryFrame::a("www.bench.test")
                .with_opt(resolver_opt)
                .build(),
            Counter::Answered,
        ),
        (
            "dnslb hit over IPv6",
            QueryFrame::a("www.bench.test").over_ipv6().build(),
            Counter::Answered,
        ),
        (
            "dnslb AAAA hit (3 records)",
            QueryFrame::aaaa("www.bench.test").build(),
            Counter::Answered,
        ),
    ];
    for (label, frame, expected) in cases {
        let before = dataplane.counters()?.get(expected);
        let per_run = dataplane.time_runs(&frame, runs)?;
        let counted = dataplane.counters()?.get(expected) - before;
        ensure!(
            counted == u64::from(runs),
            "{label}: {counted} of {runs} runs took the {expected:?} path"
        );
        results.push(MicroResult { label, per_run });
    }
    Ok(results)
}
