//! `cargo xtask bench`: dnslb against the servers people would otherwise
//! pick, and against the floor of what an XDP responder can do, on the same
//! rig in the same run. Writes BENCHMARKS.md.
//!
//! Every load is bounded in time; all traffic stays between the two
//! namespaces the run creates, which are removed at the end.

mod health;
mod hotload;
mod load;
mod micro;
mod report;
mod responders;
mod workload;

use std::{fs, path::PathBuf, process::ExitCode};

use clap::Parser;
use dnslb_tests::netns::Rig;

use crate::{
    report::{Measured, Report, Settings},
    responders::Responder,
};

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
            kxdpgun_seconds: 1,
            dnsperf_seconds: 1,
            dnsperf_qps: 2_000,
            micro_runs: 10_000,
        };
        (
            settings,
            1_000,
            10_000,
            &[
                Responder::Floor,
                Responder::DnslbXdp,
                Responder::DnslbUserspace,
            ],
        )
    } else {
        let settings = Settings {
            kxdpgun_seconds: 5,
            dnsperf_seconds: 5,
            dnsperf_qps: 20_000,
            micro_runs: 1_000_000,
        };
        (settings, 100_000, 1_000_000, &Responder::ALL)
    };
    if args.health_only {
        let rig = Rig::new()?;
        let seconds = if args.quick { 2 } else { 10 };
        for h in health::run(&rig, scratch, 10_000, seconds)? {
            println!(
                "{:<5} {:<16} {:>8.0} probes/s ({} failed), dnslb {:.3} cores ({:.3} system), bare loop {:.3} cores",
                h.kind,
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
    let workload = workload::generate(scratch, hot_names, !args.quick)?;

    println!(
        "bench: kernel micro-benchmarks ({} runs each)",
        settings.micro_runs
    );
    let micro = micro::run(settings.micro_runs)?;
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
    let mut measured = Vec::new();
    for &responder in responders {
        println!("bench: {}", responder.label());
        let running = responder.start(&rig, &workload.zone, scratch)?;
        for mix in workload.mixes.iter().filter(|mix| responder.runs(mix)) {
            let throughput = load::kxdpgun(&rig, &mix.queries, settings.kxdpgun_seconds)?;
            rig.clear_client_xdp()?;
            let latency = {
                let _pass = rig.attach_client_pass_through()?;
                load::dnsperf(
                    &rig,
                    &mix.queries,
                    settings.dnsperf_seconds,
                    settings.dnsperf_qps,
                )
            }
            .map_err(|error| error.context(running.log()))?;
            println!(
                "bench:   {:<28} {:>10.0} replies/s, p50 {:?}, p99 {:?}",
                mix.label, throughput.replies_per_second, latency.p50, latency.p99
            );
            measured.push(Measured {
                responder,
                mix: mix.label,
                throughput,
                latency,
            });
        }
        drop(running);
        rig.clear_server_xdp()?;
    }

    println!("bench: loading {hotload_names} hot names");
    let hotload = hotload::run(&rig, scratch, hotload_names)?;

    let (endpoints, seconds) = if args.quick { (1_000, 2) } else { (10_000, 10) };
    println!("bench: health checks, {endpoints} endpoints every second");
    let health = health::run(&rig, scratch, endpoints, seconds)?;
    for h in &health {
        println!(
            "bench:   {:<5} {:<16} {:>8.0} probes/s, dnslb {:.3} cores, bare loop {:.3} cores",
            h.kind,
            h.placement.label(),
            h.probes_per_second,
            h.daemon_cores,
            h.reference_cores
        );
    }

    let report = Report {
        settings: &settings,
        measured: &measured,
        micro: &micro,
        hotload: &hotload,
        health: &health,
    }
    .render();
    fs::write(&args.out, &report)?;
    println!("\n{report}");
    println!("bench: written to {}", args.out.display());
    Ok(())
}
