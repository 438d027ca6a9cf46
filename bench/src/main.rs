//! `cargo xtask bench`: dnslb against the servers people would otherwise
//! pick, and against the floor of what an XDP responder can do, on the same
//! rig in the same run. Writes BENCHMARKS.md.
//!
//! Every load is bounded in time; all traffic stays between the two
//! namespaces the run creates, which are removed at the end.

mod coldstart;
mod health;
mod hotload;
mod load;
mod micro;
mod report;
mod responders;
mod signing;
mod weighing;
mod workload;

use std::{fs, path::PathBuf, process::ExitCode};

use clap::Parser;
use dnslb_tests::{
    netns::Rig,
    resolvers::{Share, measure_shares},
};

use crate::{
    report::{Measured, Report, Settings},
    responders::{Responder, Started},
};

/// A valid client and server cookie for the rig's client address under
/// `secret`, as BIND sends once it has talked to a server.
fn bench_cookie(secret: [u8; 16]) -> Vec<u8> {
    use dns_common::cookie::{CookieAddr, CookieSecrets};
    let client = [0x42; 8];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as u32);
    let addr: std::net::Ipv4Addr = dnslb_tests::netns::CLIENT_ADDR
        .parse()
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
    let server =
        CookieSecrets::from_keys(secret, None).mint(now, client, CookieAddr::V4(addr.octets()));
    [&client[..], &server].concat()
}

#[derive(Parser)]
#[command(name = "dnslb-bench")]
struct Args {
    /// A few seconds of everything, three responders, small numbers: for
    /// checking the benchmark itself works.
    #[arg(long)]
    quick: bool,
    /// Only the kernel micro-benchmarks, printed: for working on the XDP
    /// program.
    #[arg(long)]
    micro_only: bool,
    /// Only the health-check cost (10,000 endpoints), printed: for working
    /// on the checker.
    #[arg(long)]
    health_only: bool,
    /// Only the online signing costs, printed: for working on the signer.
    #[arg(long)]
    signing_only: bool,
    /// Only the costs of signed answers from the kernel (with the kernel
    /// micro-benchmarks and the resolvers they need), printed.
    #[arg(long)]
    kernel_signing_only: bool,
    /// Only load-aware steering's costs (with the kernel
    /// micro-benchmarks), printed.
    #[arg(long)]
    weighing_only: bool,
    /// Where the markdown report goes.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let scratch = std::env::temp_dir().join(format!("dnslb-bench-{}", std::process::id()));
    let result = bench(&args, &scratch);
    let _ = fs::remove_dir_all(&scratch);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &Args, scratch: &std::path::Path) -> anyhow::Result<()> {
    let (settings, hot_names, hotload_names, responders): (_, _, _, &[Responder]) = if args.quick {
        let settings = Settings {
            flood_seconds: 1,
            dnsperf_seconds: 1,
            dnsperf_qps: 2_000,
            micro_runs: 10_000,
            rounds: 2,
        };
        (
            settings,
            1_000,
            10_000,
            // Knot DNS's XDP mode too, so that a kernel that cannot run it
            // is met (and reported) here as in the full run.
            &[
                Responder::Floor,
                Responder::DnslbXdp,
                Responder::DnslbUserspace,
                Responder::KnotXdp,
            ],
        )
    } else {
        let settings = Settings {
            flood_seconds: 3,
            dnsperf_seconds: 3,
            dnsperf_qps: 20_000,
            micro_runs: 1_000_000,
            rounds: 5,
        };
        (settings, 100_000, 1_000_000, &Responder::ALL)
    };
    if args.health_only {
        let rig = Rig::new()?;
        let seconds = if args.quick { 2 } else { 10 };
        for h in health::run(&rig, scratch, &health::every_kind(10_000), seconds)? {
            println!(
                "{:<12} {:<16} {:>8.0} probes/s ({} failed), dnslb {:.3} cores ({:.3} system), bare loop {:.3} cores",
                h.work.label(),
                h.placement.label(),
                h.probes_per_second,
                h.failed_probes,
                h.daemon_cores,
                h.daemon_system_cores,
                h.reference_cores
            );
        }
        return Ok(());
    }
    // The cookie secret dnslb runs with, so that the BIND-shaped mix can
    // carry a valid server cookie.
    fs::create_dir_all(scratch)?;
    let secret = [0x5e; 16];
    let secret_file = scratch.join("cookie.secret");
    fs::write(
        &secret_file,
        secret
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    )?;
    let workload = workload::generate(scratch, hot_names, !args.quick, &bench_cookie(secret))?;

    println!(
        "bench: kernel micro-benchmarks ({} runs each)",
        settings.micro_runs
    );
    if args.signing_only {
        let rig = Rig::new()?;
        let signing = run_signing(&rig, scratch, &workload, &settings)?;
        println!("{}", report::signing_section(&signing));
        return Ok(());
    }
    let micro = micro::run(settings.micro_runs)?;
    if args.kernel_signing_only {
        let rig = Rig::new()?;
        let resolvers = measure_resolvers(scratch)?;
        let kernel = run_kernel_signing(&rig, scratch, &workload, &settings, hotload_names)?;
        println!(
            "{}",
            report::kernel_signing_section(&kernel, &micro, &resolvers)
        );
        for (target, figure, verdict) in report::kernel_signing_targets(&kernel, &micro, &resolvers)
        {
            println!("{target}: {figure} ({verdict:?})");
        }
        return Ok(());
    }
    let report_rounds = if args.quick { 4 } else { 20 };
    if args.weighing_only {
        let rig = Rig::new()?;
        let to_kernel = weighing::run(&rig, scratch, report_rounds)?;
        let reads = health::run(&rig, scratch, &health::load_reads(), 10)?;
        println!("{}", report::weighing_section(&to_kernel, &micro, &reads));
        for (target, figure, verdict) in report::weighing_targets(&to_kernel, &micro) {
            println!("{target}: {figure} ({verdict:?})");
        }
        return Ok(());
    }
    if args.micro_only {
        for result in &micro {
            println!(
                "{:>8.1} ns  {}",
                result.per_run.as_secs_f64() * 1e9,
                result.label
            );
        }
        return Ok(());
    }

    let rig = Rig::new()?;
    rig.add_ipv6()?;
    let secret_arg = format!("--cookie-secret-file={}", secret_file.display());
    // Every cell is run once per round, the responders taking turns within
    // a round, so that a slow minute of the host hits all of them.
    let mut measured: Vec<Measured> = Vec::new();
    let mut unavailable: Vec<(Responder, String)> = Vec::new();
    for round in 0..settings.rounds {
        for &responder in responders {
            if unavailable.iter().any(|(r, _)| *r == responder) {
                continue;
            }
            println!(
                "bench: round {} of {}: {}",
                round + 1,
                settings.rounds,
                responder.label()
            );
            let running = match responder.start(&rig, &workload.zone, scratch, &secret_arg)? {
                Started::Running(running) => running,
                Started::Unavailable(reason) => {
                    println!("bench:   cannot run on this machine: {reason}");
                    rig.clear_server_xdp()?;
                    unavailable.push((responder, reason));
                    continue;
                }
            };
            for mix in workload.mixes.iter().filter(|mix| responder.runs(mix)) {
                let flooded = load::throughput(&rig, mix, settings.flood_seconds)
                    .map_err(|error| error.context(running.log()))?;
                let throughput = flooded.throughput;
                println!(
                    "bench:   {:<36} {:>10.0} replies/s ({} refused by the link, {} truncated, {} not NOERROR)",
                    mix.label,
                    throughput.replies_per_second,
                    flooded.refused,
                    flooded.replies.truncated,
                    flooded.replies.total - flooded.replies.no_error
                );
                let cell = measured
                    .iter_mut()
                    .find(|m| m.responder == responder && m.mix == mix.label);
                match cell {
                    Some(cell) => cell.throughput.push(throughput),
                    None => {
                        // Latency once per cell, in the first round. The
                        // floor's IPv6 answers carry no valid checksum, so
                        // a client's stack drops them: no latency there.
                        let latency = if responder == Responder::Floor && mix.ipv6 {
                            None
                        } else {
                            let _pass = rig.attach_client_pass_through()?;
                            let latency = load::dnsperf_latency(
                                &rig,
                                mix,
                                settings.dnsperf_seconds,
                                settings.dnsperf_qps,
                            )
                            .map_err(|error| error.context(running.log()))?;
                            Some(latency)
                        };
                        measured.push(Measured {
                            responder,
                            mix: mix.label,
                            throughput: vec![throughput],
                            latency,
                        });
                    }
                }
            }
            drop(running);
            rig.clear_server_xdp()?;
        }
    }

    let resolvers = measure_resolvers(scratch)?;

    println!("bench: loading {hotload_names} hot names");
    let hotload = hotload::run(&rig, scratch, hotload_names, false)?;

    let (endpoints, seconds) = if args.quick { (1_000, 2) } else { (10_000, 10) };
    println!("bench: health checks, {endpoints} endpoints every second");
    // A quick run reads load across the veth only: enough to show it works.
    let plan: Vec<_> = health::every_kind(endpoints)
        .into_iter()
        .filter(|(work, placement, _)| {
            !args.quick
                || matches!(work, health::Work::Check(_))
                || *placement == health::Placement::AcrossVeth
        })
        .collect();
    let health = health::run(&rig, scratch, &plan, seconds)?;
    for h in &health {
        println!(
            "bench:   {:<12} {:<16} {:>8.0} probes/s, dnslb {:.3} cores, bare loop {:.3} cores",
            h.work.label(),
            h.placement.label(),
            h.probes_per_second,
            h.daemon_cores,
            h.reference_cores
        );
    }

    let rounds = if args.quick { 2 } else { 10 };
    println!("bench: {rounds} cold starts of a function pool");
    let cold = coldstart::run(&rig, scratch, rounds)?;

    println!("bench: load reports to the kernel, {report_rounds} rounds");
    let to_kernel = weighing::run(&rig, scratch, report_rounds)?;

    println!("bench: online signing");
    let signing = run_signing(&rig, scratch, &workload, &settings)?;
    let kernel_signing = run_kernel_signing(&rig, scratch, &workload, &settings, hotload_names)?;

    let report = Report {
        settings: &settings,
        measured: &measured,
        unavailable: &unavailable,
        micro: &micro,
        resolvers: &resolvers,
        hotload: &hotload,
        health: &health,
        cold: &cold,
        signing: &signing,
        kernel_signing: &kernel_signing,
        weighing: &to_kernel,
    }
    .render();
    fs::write(&args.out, &report)?;
    println!("\n{report}");
    println!("bench: written to {}", args.out.display());
    Ok(())
}

/// The workload's mixes of DO queries without other options.
fn do_mixes(workload: &workload::Workload) -> Vec<&workload::Mix> {
    workload
        .mixes
        .iter()
        .filter(|mix| mix.edns.dnssec_ok && mix.edns.cookie.is_none())
        .collect()
}

/// Every resolver's share of hot-name queries answered by the kernel, the
/// zones unsigned and then signed (the resolvers validating).
fn measure_resolvers(scratch: &std::path::Path) -> anyhow::Result<Vec<Share>> {
    println!("bench: real resolvers through dnslb");
    let mut shares = Vec::new();
    for signed in [false, true] {
        // A rig each: the resolvers' run adds its IPv6 addresses.
        let resolver_rig = Rig::new()?;
        let dir = scratch.join(format!("resolvers-{signed}"));
        shares.extend(measure_shares(&resolver_rig, &dir, 50, signed)?);
    }
    Ok(shares)
}

/// Signed answers from the kernel: its DO throughput on the workload's
/// one-name DO mix, signed against unsigned, and `names` hot names loaded
/// unsigned and signed.
fn run_kernel_signing(
    rig: &Rig,
    scratch: &std::path::Path,
    workload: &workload::Workload,
    settings: &Settings,
    names: usize,
) -> anyhow::Result<signing::KernelSigning> {
    println!("bench: signed answers from the kernel");
    let throughput = signing::kernel_throughput(
        rig,
        scratch,
        &workload.zone,
        &do_mixes(workload),
        (
            settings.flood_seconds,
            settings.dnsperf_qps,
            settings.rounds,
        ),
    )?;
    println!("bench: loading {names} hot names, unsigned and signed");
    Ok(signing::KernelSigning {
        throughput,
        unsigned_load: hotload::run(rig, scratch, names, false)?,
        signed_load: hotload::run(rig, scratch, names, true)?,
    })
}

/// Online signing's costs, on the workload's DO mix and, in a full run,
/// its 100,000 names asked with DO.
fn run_signing(
    rig: &Rig,
    scratch: &std::path::Path,
    workload: &workload::Workload,
    settings: &Settings,
) -> anyhow::Result<signing::SigningCost> {
    let uniform_do = workload
        .mixes
        .iter()
        .find(|mix| mix.label.starts_with("100,000"))
        .map(|mix| workload::Mix {
            label: "100,000 hot names, DO",
            queries: mix.queries.clone(),
            edns: dnslb_tests::load::flood::Edns {
                dnssec_ok: true,
                ..Default::default()
            },
            weighted: false,
            resolver_shaped: true,
            ipv6: false,
        });
    let mut mixes = do_mixes(workload);
    mixes.extend(uniform_do.as_ref());
    signing::run(
        rig,
        scratch,
        &workload.zone,
        &mixes,
        settings.flood_seconds,
        settings.dnsperf_qps,
        settings.rounds,
    )
}
