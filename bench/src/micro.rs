//! Kernel time per packet through `BPF_PROG_TEST_RUN` in live-frame mode:
//! the floor program against dnslb's program on a hit, a miss, a weighted
//! pick, a 250-byte name, and a DO hit signed and not. Each dnslb case is checked, by its counters,
//! to have taken the path it claims to measure.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use anyhow::{Context, ensure};
use aya::{EbpfLoader, maps::HashMap, programs::Xdp};
use dns_common::{Counter, HotName, SET_SIGNED, guard::RateLimit, names};
use dnslb::{
    dataplane::{
        Dataplane, DataplaneOptions, EBPF_OBJECT, Endpoint, HotAnswer, HotSignatures, HotType,
        time_runs,
    },
    policy::{AllUp, Flat, Pick, Policy, Pool, PoolEndpoint},
    signer::{SigningPolicy, ZoneSigner, now},
};
use dnslb_tests::{
    frame::{Opt, QueryFrame, SERVER_MAC, wire_name},
    testrun::serve_test_frames,
};
use hickory_proto::rr::Name;

use crate::responders::FLOOR_OBJECT;

pub struct MicroResult {
    pub label: String,
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

/// Program `name` of `ebpf`, loaded into the kernel.
fn loaded<'a>(ebpf: &'a mut aya::Ebpf, name: &str) -> anyhow::Result<&'a mut Xdp> {
    let program: &mut Xdp = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing"))?
        .try_into()?;
    program.load()?;
    Ok(program)
}

/// Rounds of each pair measured in turn.
const PAIR_ROUNDS: usize = 9;

/// Two cases measured in turn over rounds, so that a slow moment of the
/// host hits both, with `runs` runs each a round, every run checked to be
/// answered; the round of the median ratio (second / first) gives both
/// figures.
fn in_turn(
    dataplane: &mut Dataplane,
    (first_label, first): (String, Vec<u8>),
    (second_label, second): (String, Vec<u8>),
    runs: u32,
) -> anyhow::Result<[MicroResult; 2]> {
    let mut rounds = Vec::new();
    for _ in 0..PAIR_ROUNDS {
        let before = dataplane.counters()?.get(Counter::Answered);
        let pair = (
            dataplane.time_runs(&first, runs)?,
            dataplane.time_runs(&second, runs)?,
        );
        let answered = dataplane.counters()?.get(Counter::Answered) - before;
        ensure!(
            answered == 2 * u64::from(runs),
            "{answered} of {} runs of {first_label} and {second_label} answered",
            2 * runs
        );
        rounds.push(pair);
    }
    rounds.sort_by(|a, b| {
        let ratio = |(first, second): &(Duration, Duration)| {
            second.as_secs_f64() / first.as_secs_f64().max(f64::MIN_POSITIVE)
        };
        ratio(a).total_cmp(&ratio(b))
    });
    let (first, second) = rounds[PAIR_ROUNDS / 2];
    Ok([
        MicroResult {
            label: first_label,
            per_run: first,
        },
        MicroResult {
            label: second_label,
            per_run: second,
        },
    ])
}

/// A DO hit of three records in a zone signed online against the same in
/// an unsigned zone, in turn.
fn signed_against_unsigned(
    dataplane: &mut Dataplane,
    runs: u32,
) -> anyhow::Result<[MicroResult; 2]> {
    let ask = |name: &str| {
        QueryFrame::a(name)
            .with_opt(Opt::plain(1232).dnssec())
            .build()
    };
    in_turn(
        dataplane,
        (
            format!(
                "dnslb DO hit, unsigned zone (3 records; median of {PAIR_ROUNDS} rounds in turn)"
            ),
            ask("www.bench.test"),
        ),
        (
            "dnslb DO hit, signed zone (3 records and their RRSIG; the same round)".into(),
            ask("www.signed.bench.test"),
        ),
        runs,
    )
}

/// A weighted pick whose weights the policy file gives against one whose
/// weights follow load (shares 1, 0.6 and 0.05 of equal weights, drawn
/// and flattened as the steering writes them), in turn.
fn load_weights_against_configured(
    dataplane: &mut Dataplane,
    addrs: &[IpAddr],
    runs: u32,
) -> anyhow::Result<[MicroResult; 2]> {
    let endpoints = addrs
        .iter()
        .zip([1.0, 0.6, 0.05])
        .map(|(&addr, share)| PoolEndpoint {
            weight: 10,
            share,
            ..PoolEndpoint::new(addr)
        })
        .collect();
    let pool = Pool {
        name: "bench".into(),
        endpoints,
        check: None,
    };
    let leaf = Policy::Pool {
        pool: 0,
        pick: Pick::ByWeight,
        branch: 0,
    };
    let Some(Flat::Weighted(flat)) = leaf.draw(&[pool], &AllUp, None).flatten() else {
        anyhow::bail!("a weighted pool flattens into a weighted kernel draw");
    };
    let endpoints = flat
        .into_iter()
        .map(|(weight, drawn)| Endpoint {
            addr: drawn.addr,
            weight,
        })
        .collect();
    let answer = HotAnswer::Weighted {
        ttl: 300,
        endpoints,
    };
    let key = HotName::from_wire(&wire_name("loaded.bench.test")).context("bad name")?;
    dataplane.set_hot(&key, &answer.encode(HotType::A)?)?;
    in_turn(
        dataplane,
        (
            format!(
                "dnslb weighted pick, configured weights (median of {PAIR_ROUNDS} rounds in turn)"
            ),
            QueryFrame::a("weighted.bench.test").build(),
        ),
        (
            "dnslb weighted pick, weights from load (shares 1, 0.6, 0.05; the same round)".into(),
            QueryFrame::a("loaded.bench.test").build(),
        ),
        runs,
    )
}

/// A signer of `signed.bench.test.` with the default policy (ECDSA P-256),
/// its keys made in a scratch directory.
fn bench_signer() -> anyhow::Result<ZoneSigner> {
    let dir = std::env::temp_dir().join(format!("dnslb-bench-micro-keys-{}", std::process::id()));
    let origin = Name::from_ascii("signed.bench.test.")?;
    let signer = ZoneSigner::open(&origin, SigningPolicy::default(), &dir, None, now());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(signer?)
}

pub fn run(runs: u32) -> anyhow::Result<Vec<MicroResult>> {
    let hit = QueryFrame::a("www.bench.test").build();

    let mut results = Vec::new();
    let mut pass_only = EbpfLoader::new().load(EBPF_OBJECT)?;
    results.push(MicroResult {
        label: "XDP_PASS only (the cost of timing a run)".into(),
        per_run: time_runs(loaded(&mut pass_only, names::PASS_PROGRAM)?, &hit, runs)?,
    });
    let mut floor = EbpfLoader::new().load(FLOOR_OBJECT)?;
    let mut records: HashMap<_, u64, [u8; 16]> = HashMap::try_from(
        floor
            .map_mut("FLOOR_RECORDS")
            .context("floor map missing")?,
    )?;
    // The floor's key: the first eight bytes of the query name.
    let name = wire_name("www.bench.test");
    let key = u64::from_le_bytes(name[..8].try_into()?);
    let record = [0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4, 198, 18, 10, 1];
    records.insert(key, record, 0)?;
    for (label, name) in [
        ("floor", "floor"),
        ("floor + one hash lookup", "floor_lookup"),
        (
            "floor + one hash lookup + one A record appended",
            "floor_answer",
        ),
    ] {
        results.push(MicroResult {
            label: label.into(),
            per_run: time_runs(loaded(&mut floor, name)?, &hit, runs)?,
        });
    }

    let mut dataplane = Dataplane::load(DataplaneOptions::new(53, 1232, 16))?;
    serve_test_frames(&mut dataplane)?;
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
    // The same three records in a zone signed online: one ECDSA RRSIG
    // with them.
    let signer = bench_signer()?;
    let signed = HotName::from_wire(&wire_name("www.signed.bench.test")).context("bad name")?;
    let value = round_robin(&addrs)
        .encode(HotType::A)?
        .with_flags(SET_SIGNED);
    let signatures = HotSignatures::sign(&signed, &value, &signer).context("signing")?;
    dataplane.set_hot_signed(&signed, &value, Some(&signatures))?;
    // What a validating resolver sends: DO, a cookie, a Client Subnet.
    let resolver_opt = Opt::plain(1232)
        .dnssec()
        .cookie([7; 8], &[])
        .subnet(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 0)), 24);
    let cases = [
        (
            "dnslb hit (3 records, round robin)",
            hit.clone(),
            Counter::Answered,
        ),
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
        results.push(MicroResult {
            label: label.into(),
            per_run,
        });
    }

    results.extend(signed_against_unsigned(&mut dataplane, runs)?);
    results.extend(load_weights_against_configured(
        &mut dataplane,
        &addrs,
        runs,
    )?);

    // The same hit with rate limiting on (at a rate never reached): the
    // client network's bucket is read and written for every answer.
    dataplane.set_guard(&RateLimit::per_second(u32::MAX, u32::MAX, 0).guard(SERVER_MAC))?;
    results.push(MicroResult {
        label: "dnslb hit, rate limiting on (bucket read and written)".into(),
        per_run: dataplane.time_runs(&hit, runs)?,
    });
    serve_test_frames(&mut dataplane)?;

    // The same hit with `--xdp-log` on: every packet logs a record. Off
    // (above), the verifier removed the logging code, as the translated
    // sizes show.
    let off_size = dataplane.translated_size()?;
    let mut logging = Dataplane::load(DataplaneOptions {
        log: true,
        ..DataplaneOptions::new(53, 1232, 16)
    })?;
    serve_test_frames(&mut logging)?;
    let key = HotName::from_wire(&wire_name("www.bench.test")).context("bad benchmark name")?;
    logging.set_hot(&key, &round_robin(&addrs).encode(HotType::A)?)?;
    let on_size = logging.translated_size()?;
    results.push(MicroResult {
        label: format!(
            "dnslb hit, --xdp-log on (program {on_size} B as translated; {off_size} B with it off)"
        ),
        per_run: logging.time_runs(&hit, runs)?,
    });
    Ok(results)
}
