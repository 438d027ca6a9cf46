//! BENCHMARKS.md: the figures of one run, with the machine they came from,
//! and the targets checked against ratios from that same run.

use std::{fmt::Write as _, fs, process::Command, time::Duration};

use dnslb_tests::load::{Latency, Throughput};

use crate::{
    coldstart::ColdStarts,
    health::HealthCost,
    hotload::HotLoad,
    micro::MicroResult,
    responders::Responder,
    signing::{KernelSigning, SigningCost},
    weighing::ReportToKernel,
};

/// One responder on one mix: a throughput per round, the latency of the
/// first.
pub struct Measured {
    pub responder: Responder,
    pub mix: &'static str,
    pub throughput: Vec<Throughput>,
    /// `None` where it cannot be measured (the floor over IPv6).
    pub latency: Option<Latency>,
}

impl Measured {
    /// Replies per second: the median over the rounds, and the lowest and
    /// highest.
    pub fn rates(&self) -> (f64, f64, f64) {
        let mut rates: Vec<f64> = self
            .throughput
            .iter()
            .map(|t| t.replies_per_second)
            .collect();
        rates.sort_by(f64::total_cmp);
        let middle = rates.len() / 2;
        let median = if rates.len() % 2 == 1 {
            rates[middle]
        } else {
            (rates[middle - 1] + rates[middle]) / 2.0
        };
        (median, rates[0], rates[rates.len() - 1])
    }
}

/// How a target came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Met,
    Missed,
    /// Its reference could not run on this machine.
    NotJudged,
}

impl Verdict {
    fn of(met: bool) -> Verdict {
        if met { Verdict::Met } else { Verdict::Missed }
    }
}

pub struct Settings {
    pub flood_seconds: u32,
    pub dnsperf_seconds: u32,
    pub dnsperf_qps: u32,
    pub micro_runs: u32,
    /// Times every throughput cell is run, responders taking turns.
    pub rounds: u32,
}

pub struct Report<'a> {
    pub settings: &'a Settings,
    pub measured: &'a [Measured],
    /// Responders this machine cannot run, with the reason.
    pub unavailable: &'a [(Responder, String)],
    pub micro: &'a [MicroResult],
    pub resolvers: &'a [dnslb_tests::resolvers::Share],
    pub hotload: &'a HotLoad,
    pub health: &'a [HealthCost],
    pub cold: &'a ColdStarts,
    pub signing: &'a SigningCost,
    pub kernel_signing: &'a KernelSigning,
    pub weighing: &'a ReportToKernel,
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|line| {
                Some(
                    line.strip_prefix("model name")?
                        .trim_start_matches([' ', '\t', ':'])
                        .to_string(),
                )
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{} on Linux {}, {cores} cores ({cpu})",
        command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        command_output("uname", &["-r"]),
    )
}

fn sorted(times: &[Duration]) -> Vec<Duration> {
    let mut times = times.to_vec();
    times.sort();
    times
}

fn micros(duration: Duration) -> String {
    format!("{:.0} µs", duration.as_secs_f64() * 1e6)
}

fn ratio(value: f64, reference: Option<f64>) -> String {
    match reference {
        Some(reference) if reference > 0.0 => format!("{:.2}", value / reference),
        _ => "–".into(),
    }
}

impl Report<'_> {
    /// The median replies per second of `responder` on `mix`.
    fn rate(&self, responder: Responder, mix: &str) -> Option<f64> {
        self.measured
            .iter()
            .find(|m| m.responder == responder && m.mix == mix)
            .map(|m| m.rates().0)
    }

    fn micro(&self, label_start: &str) -> Option<f64> {
        micro_ns(self.micro, label_start)
    }

    pub fn render(&self) -> String {
        let s = self.settings;
        let mut out = String::new();
        let _ = writeln!(out, "# dnslb benchmarks\n");
        let _ = writeln!(out, "Measured {} by `cargo xtask bench`.", machine());
        let _ = writeln!(
            out,
            "Client and server are network namespaces joined by a veth pair (198.18.0.1 → 198.18.0.2), \
             XDP in native mode. Ratios compare figures of this same run: the machines are noisy, \
             absolute numbers from different runs are not comparable.\n"
        );

        let _ = writeln!(
            out,
            "## Throughput\n\ndnslb's load generator offering {} M queries/s for {} s from one client core: whole \
             frames through a packet socket on the client's veth (so it runs on every kernel), each mix with \
             its own EDNS (DO, cookies, Client Subnet) and source ports spread over 1024; replies counted by \
             an XDP program on the client's veth (by response code, and truncated ones apart), which drops \
             them. Answered is replies against the queries the client's link took. \
             Every cell ran {} times, the responders taking turns within each round (floor, dnslb, …, \
             floor, dnslb, …) so that a slow minute of the host hits all of them; the figure is the \
             median, with the lowest and highest run, and the ratios are ratios of medians.\n",
            crate::load::FLOOD_QPS / 1_000_000,
            s.flood_seconds,
            s.rounds
        );
        if self.unavailable.is_empty() {
            out.push_str("Every responder ran on this machine's kernel.\n\n");
        }
        for (responder, reason) in self.unavailable {
            let _ = writeln!(
                out,
                "**{} could not run on this machine**, so it has no rows and no target is judged against it: {reason}\n",
                responder.label()
            );
        }
        out.push_str("| responder | mix | replies/s (median) | range | answered | × floor | × Knot XDP |\n|---|---|---:|---:|---:|---:|---:|\n");
        for m in self.measured {
            let (rate, low, high) = m.rates();
            let (replies, sent) = m
                .throughput
                .iter()
                .fold((0, 0), |(r, q), t| (r + t.replies, q + t.sent));
            let answered = replies as f64 / sent.max(1) as f64 * 100.0;
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.0}–{:.0} | {answered:.0}% | {} | {} |",
                m.responder.label(),
                m.mix,
                rate,
                low,
                high,
                ratio(rate, self.rate(Responder::Floor, m.mix)),
                ratio(rate, self.rate(Responder::KnotXdp, m.mix)),
            );
        }

        out.push_str(
            "\n## Real resolvers\n\nEach resolver, with the EDNS habits it ships with, resolves 50 hot names \
             (A and AAAA) in a zone it reaches over IPv4 and one it reaches over IPv6, all forwarded to dnslb \
             on the rig; the kernel's counters say how many of its hot-name queries XDP answered. Then the \
             same with both zones signed online and each resolver validating (dnslb's keys as its trust \
             anchors; every answer checked for AD).\n\n\
             | resolver | zones | hot-name queries | answered by XDP | share |\n|---|---|---:|---:|---:|\n",
        );
        for share in self.resolvers {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.1}% |",
                share.kind.name(),
                if share.validating {
                    "signed, validating"
                } else {
                    "unsigned"
                },
                share.hot_queries,
                share.by_xdp,
                share.fraction() * 100.0
            );
        }

        let _ = writeln!(
            out,
            "\n## Latency\n\ndnsperf through the client's kernel stack at a fixed {} queries/s for {} s \
             (4 clients); percentiles of every answered query.\n",
            s.dnsperf_qps, s.dnsperf_seconds
        );
        out.push_str("| responder | mix | p50 | p99 | answered |\n|---|---|---:|---:|---:|\n");
        for m in self.measured {
            let Some(l) = &m.latency else {
                continue;
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {}/{} |",
                m.responder.label(),
                m.mix,
                micros(l.p50),
                micros(l.p99),
                l.answered,
                l.sent
            );
        }

        let _ = writeln!(
            out,
            "\n## Kernel time per packet\n\nThe kernel's own time per run from `BPF_PROG_TEST_RUN`, mean of {} runs \
             of one run each (so every run sees the original query, not its own previous answer). Each figure \
             includes the kernel's fixed cost of timing a run, shown by the pass-only program. Each dnslb case \
             is checked by its counters to have taken the path named.\n",
            s.micro_runs
        );
        out.push_str("| program | ns per packet | × floor |\n|---|---:|---:|\n");
        let floor = self.micro("floor");
        for m in self.micro {
            let ns = m.per_run.as_secs_f64() * 1e9;
            let _ = writeln!(out, "| {} | {ns:.0} | {} |", m.label, ratio(ns, floor));
        }

        let h = self.hotload;
        let _ = writeln!(
            out,
            "\n## Loading hot names\n\nA zone of {} single-address names, loaded by `dnslb run` with XDP attached.\n",
            h.names
        );
        out.push_str("| zone parsed | kernel map filled | until serving | daemon peak RSS | kernel map | per name: daemon / kernel |\n|---:|---:|---:|---:|---:|---:|\n");
        let _ = writeln!(
            out,
            "| {:.2} s | {:.2} s | {:.2} s | {:.0} MiB | {:.0} MiB | {} B / {} B |",
            h.zone_seconds,
            h.fill_seconds,
            h.total_seconds,
            h.daemon_peak_bytes as f64 / 1048576.0,
            h.map_bytes as f64 / 1048576.0,
            h.daemon_peak_bytes / h.names as u64,
            h.map_bytes / h.names as u64,
        );

        out.push_str(
            "\n## Health checks at scale\n\n`dnslb run --no-xdp` with a policy file of 100-endpoint pools, every endpoint \
             checked once a second (all endpoints are loopback addresses in the rig's server namespace, served by \
             one listener); and, in the `load` rows, no checks but the load of 1,000 endpoints read every second \
             (`load = { source = \"agent\" }`, a HAProxy agent answering `50%`, and `source = \"http\"`, a body \
             of `0.5`), counted by `dnslb_load_reads_total`. CPU is the daemon's user + system time over wall time, after a 3 s warm-up; 1.0 is one \
             core. The reference is one bare thread making the same connections (and HTTP requests) at the same \
             rate, measured in the same run. Across the veth, the endpoints are in the client namespace and \
             both veth ends receive in threaded NAPI, so each host pays for what it receives, as hosts on a real \
             network do; the target is judged there. On loopback, the endpoint's half of every handshake is \
             charged to the prober too (worst case, for comparison).\n\n",
        );
        polling_table(&mut out, self.health.iter());

        let (cold, warm) = (sorted(&self.cold.cold), sorted(&self.cold.warm));
        let _ = writeln!(
            out,
            "\n## Function pool cold starts\n\nA function pool with no instance running (`min = 0`): a query \
             from the client namespace, timed until its answer arrives. dnslb starts the instance (busybox \
             httpd), probes it ready every 10 ms, writes it to the kernel and answers the held query. The \
             reference is the next query for the same name, answered by the kernel. {} cold starts.\n",
            cold.len()
        );
        out.push_str("| | median | max | median × warm |\n|---|---:|---:|---:|\n");
        let median = |d: &[Duration]| d.get(d.len() / 2).copied().unwrap_or_default();
        let warm_median = median(&warm).as_secs_f64();
        for (label, times) in [
            ("cold start, query to answer", &cold),
            ("warm, from XDP", &warm),
        ] {
            let _ = writeln!(
                out,
                "| {label} | {} | {} | {} |",
                micros(median(times)),
                micros(times.last().copied().unwrap_or_default()),
                ratio(median(times).as_secs_f64(), Some(warm_median)),
            );
        }

        out.push_str(&signing_section(self.signing));
        out.push_str(&kernel_signing_section(
            self.kernel_signing,
            self.micro,
            self.resolvers,
        ));
        out.push_str(&weighing_section(self.weighing, self.micro, self.health));

        out.push_str("\n## Targets\n\n| target | this run | met |\n|---|---|---|\n");
        for (target, figure, verdict) in self.targets() {
            let verdict = match verdict {
                Verdict::Met => "yes",
                Verdict::Missed => "**no**",
                Verdict::NotJudged => "not judged",
            };
            let _ = writeln!(out, "| {target} | {figure} | {verdict} |");
        }
        out
    }
}

/// The label starts of the micro-benchmark's signed and unsigned DO hits.
const SIGNED_DO_HIT: &str = "dnslb DO hit, signed";
const UNSIGNED_DO_HIT: &str = "dnslb DO hit, unsigned";

/// Kernel nanoseconds per packet of the micro-benchmark whose label starts
/// with `label_start`.
fn micro_ns(micro: &[MicroResult], label_start: &str) -> Option<f64> {
    micro
        .iter()
        .find(|m| m.label.starts_with(label_start))
        .map(|m| m.per_run.as_secs_f64() * 1e9)
}

/// The section on signed answers from the kernel.
pub fn kernel_signing_section(
    k: &KernelSigning,
    micro: &[MicroResult],
    resolvers: &[dnslb_tests::resolvers::Share],
) -> String {
    let mut out = String::new();
    let out_ref = &mut out;
    let floor = micro_ns(micro, "floor");
    let _ = writeln!(
        out_ref,
        "\n## Signed answers from the kernel\n\nA DO query for a hot name of a zone signed online, answered by \
         the XDP program with the RRSIG the daemon made for it (ECDSA P-256), against the same query for \
         a zone without DNSSEC, through `BPF_PROG_TEST_RUN` (the two measured in turn over rounds; the \
         round with the median ratio):\n\n| program | ns per packet | × unsigned DO hit | × floor |\n|---|---:|---:|---:|"
    );
    let unsigned = micro_ns(micro, UNSIGNED_DO_HIT);
    for label in [UNSIGNED_DO_HIT, SIGNED_DO_HIT] {
        if let Some(ns) = micro_ns(micro, label) {
            let _ = writeln!(
                out_ref,
                "| {label} | {ns:.0} | {} | {} |",
                ratio(ns, unsigned),
                ratio(ns, floor)
            );
        }
    }
    let _ = writeln!(
        out_ref,
        "\nOn the rig, XDP attached, the flood's DO queries to the zone signed online against the same \
         zone unsigned (in turn, median pair):\n\n| mix | signed replies/s | unsigned replies/s | signed / unsigned |\n|---|---:|---:|---:|"
    );
    for (mix, signed, plain) in &k.throughput {
        let _ = writeln!(
            out_ref,
            "| {mix} | {:.0} | {:.0} | {} |",
            signed.replies_per_second,
            plain.replies_per_second,
            ratio(signed.replies_per_second, Some(plain.replies_per_second))
        );
    }
    let _ = writeln!(
        out_ref,
        "\nA zone of {} single-address names loaded by `dnslb run` with XDP attached, unsigned and then \
         signed online (`--sign`: every name's A RRset signed and its RRSIG written into the kernel's \
         signature maps before serving). Kernel memory is the maps' own count (`memlock`); a signed \
         name's is what the signature maps grew by, per name:\n\n| zone | kernel filled | until serving | daemon peak RSS | hot-name maps | signature maps | kernel memory per signed name |\n|---|---:|---:|---:|---:|---:|---:|",
        k.signed_load.names
    );
    for load in [&k.unsigned_load, &k.signed_load] {
        let per_name = match load.signed {
            true => format!(
                "{} B",
                load.signature_map_bytes
                    .saturating_sub(k.unsigned_load.signature_map_bytes)
                    / load.names.max(1) as u64
            ),
            false => "–".to_owned(),
        };
        let _ = writeln!(
            out_ref,
            "| {} | {:.2} s | {:.2} s | {:.0} MiB | {:.0} MiB | {:.0} MiB | {per_name} |",
            if load.signed { "signed" } else { "unsigned" },
            load.fill_seconds,
            load.total_seconds,
            load.daemon_peak_bytes as f64 / 1048576.0,
            load.map_bytes as f64 / 1048576.0,
            load.signature_map_bytes as f64 / 1048576.0,
        );
    }
    let validating: Vec<_> = resolvers.iter().filter(|s| s.validating).collect();
    if !validating.is_empty() {
        let _ = writeln!(
            out_ref,
            "\nValidating resolvers (see Real resolvers): the share of their hot-name queries to the signed \
             zones the kernel answered, beside the unsigned zones' share.\n\n| resolver | signed, validating | unsigned |\n|---|---:|---:|"
        );
        for share in validating {
            let unsigned = resolvers
                .iter()
                .find(|s| !s.validating && s.kind == share.kind)
                .map_or("–".to_owned(), |s| {
                    format!("{:.1}%", s.fraction() * 100.0)
                });
            let _ = writeln!(
                out_ref,
                "| {} | {:.1}% | {unsigned} |",
                share.kind.name(),
                share.fraction() * 100.0
            );
        }
    }
    out
}

/// A table of polling costs, one row each.
fn polling_table<'a>(out: &mut String, rows: impl Iterator<Item = &'a HealthCost>) {
    out.push_str("| polling | endpoints | probes or reads/s | failed | dnslb CPU (cores) | of which system | bare loop (cores) | dnslb / bare |\n|---|---|---:|---:|---:|---:|---:|---:|\n");
    for h in rows {
        let _ = writeln!(
            out,
            "| {} | {} {} | {:.0} | {} | {:.3} | {:.3} | {:.3} | {} |",
            h.work.label(),
            h.endpoints,
            h.placement.label(),
            h.probes_per_second,
            h.failed_probes,
            h.daemon_cores,
            h.daemon_system_cores,
            h.reference_cores,
            ratio(h.daemon_cores, Some(h.reference_cores)),
        );
    }
}

const CONFIGURED_WEIGHTS: &str = "dnslb weighted pick, configured weights";
const LOAD_WEIGHTS: &str = "dnslb weighted pick, weights from load";

/// The section on load-aware steering: its kernel cost, how soon a report
/// reaches the kernel, and what reading loads costs (the `load` rows of
/// `polling`).
pub fn weighing_section(
    to_kernel: &ReportToKernel,
    micro: &[MicroResult],
    polling: &[HealthCost],
) -> String {
    let mut out = String::new();
    let out_ref = &mut out;
    let _ = writeln!(
        out_ref,
        "\n## Load-aware steering\n\nA weighted pick whose weights follow load (shares 1, 0.6 and 0.05 of \
         equal weights, drawn and flattened as the steering writes them) against one whose weights the \
         policy file gives, through `BPF_PROG_TEST_RUN` (measured in turn over rounds; the round with the \
         median ratio). The kernel's work does not change: the shares are folded into the weights the \
         daemon writes.\n\n| program | ns per packet | × configured weights |\n|---|---:|---:|"
    );
    let configured = micro_ns(micro, CONFIGURED_WEIGHTS);
    for label in [CONFIGURED_WEIGHTS, LOAD_WEIGHTS] {
        if let Some(ns) = micro_ns(micro, label) {
            let _ = writeln!(out_ref, "| {label} | {ns:.0} | {} |", ratio(ns, configured));
        }
    }
    let (rounds, calls) = (sorted(&to_kernel.rounds), sorted(&to_kernel.calls));
    let median = |d: &[Duration]| d.get(d.len() / 2).copied().unwrap_or_default();
    let _ = writeln!(
        out_ref,
        "\nFrom a pushed load to the kernel drawing by it: `dnslb endpoint load` sheds one endpoint of a \
         weighted pool of three (and, the next round, brings it back), the daemon attached to the rig's \
         veth; a client in the client namespace asks the kernel until {} answers in a row follow the \
         report. {} rounds.\n\n| | median | max |\n|---|---:|---:|\n\
         | report to the kernel drawing by it | {} | {} |\n\
         | of which the report's call (`dnslb endpoint load`: a process, the control API, the kernel write) | {} | {} |",
        crate::weighing::IN_A_ROW,
        rounds.len(),
        micros(median(&rounds)),
        micros(rounds.last().copied().unwrap_or_default()),
        micros(median(&calls)),
        micros(calls.last().copied().unwrap_or_default()),
    );
    let reads: Vec<&HealthCost> = polling
        .iter()
        .filter(|h| matches!(h.work, crate::health::Work::Load(_)))
        .collect();
    if !reads.is_empty() {
        let _ = writeln!(
            out_ref,
            "\nReading load every second from 1,000 endpoints (`dnslb run --no-xdp`, ten 100-endpoint pools, \
             no health checks; a HAProxy agent answering `50%`, or an HTTP body of `0.5`), CPU as in the \
             health-check table:\n"
        );
        polling_table(out_ref, reads.into_iter());
    }
    out
}

/// The targets of load-aware steering.
pub fn weighing_targets(
    to_kernel: &ReportToKernel,
    micro: &[MicroResult],
) -> Vec<(String, String, Verdict)> {
    let mut targets = Vec::new();
    if let (Some(load), Some(configured)) = (
        micro_ns(micro, LOAD_WEIGHTS),
        micro_ns(micro, CONFIGURED_WEIGHTS),
    ) {
        let r = load / configured;
        targets.push((
            "kernel ns per packet, weighted pick with weights from load / configured weights ≤ 1.05 (unchanged)"
                .into(),
            format!("{r:.3}"),
            Verdict::of(r <= 1.05),
        ));
    }
    let slowest = to_kernel.rounds.iter().max().copied().unwrap_or_default();
    targets.push((
        "a pushed load drawn by the kernel < 2 s after it is reported (slowest round)".into(),
        micros(slowest),
        Verdict::of(slowest < Duration::from_secs(2)),
    ));
    targets
}

/// The targets of signed answers from the kernel.
pub fn kernel_signing_targets(
    k: &KernelSigning,
    micro: &[MicroResult],
    resolvers: &[dnslb_tests::resolvers::Share],
) -> Vec<(String, String, Verdict)> {
    let mut targets = Vec::new();
    if let (Some(signed), Some(unsigned)) = (
        micro_ns(micro, SIGNED_DO_HIT),
        micro_ns(micro, UNSIGNED_DO_HIT),
    ) {
        let r = signed / unsigned;
        targets.push((
            "kernel ns per packet, signed DO hit / unsigned DO hit ≤ 1.3".into(),
            format!("{r:.3}"),
            Verdict::of(r <= 1.3),
        ));
    }
    let load = &k.signed_load;
    targets.push((
        format!(
            "{} signed hot names served by the kernel in < 60 s",
            load.names
        ),
        format!("{:.2} s", load.total_seconds),
        Verdict::of(load.total_seconds < 60.0),
    ));
    targets.push((
        format!(
            "daemon peak memory loading {} signed names < 2 GiB",
            load.names
        ),
        format!("{:.0} MiB", load.daemon_peak_bytes as f64 / 1048576.0),
        Verdict::of(load.daemon_peak_bytes < 2 << 30),
    ));
    for share in resolvers.iter().filter(|s| s.validating) {
        targets.push((
            format!(
                "{}, validating a signed zone: hot-name queries answered by XDP ≥ 99%",
                share.kind.name()
            ),
            format!("{:.1}%", share.fraction() * 100.0),
            Verdict::of(share.fraction() >= 0.99),
        ));
    }
    targets
}

/// The online signing section of the report.
pub fn signing_section(g: &SigningCost) -> String {
    let mut out = String::new();
    {
        let out = &mut out;
        let _ = writeln!(
            out,
            "\n## DNSSEC online signing\n\nSignatures made per second on one core, each of a new RRset (so \
             none comes from the cache), by the signer the daemon uses (ring through hickory). The \
             reference is the daemon's own answer to a DO query for the zone unsigned, as its server makes \
             it (the fast path: question and pre-encoded records copied), on one core, timed the same way: \
             {:.0} answers/s.\n",
            g.unsigned_answers_per_core
        );
        out.push_str(
            "| algorithm | signatures/s per core | × unsigned answers |\n|---|---:|---:|\n",
        );
        for (algorithm, rate) in &g.per_core {
            let _ = writeln!(
                out,
                "| {algorithm} | {rate:.0} | {} |",
                ratio(*rate, Some(g.unsigned_answers_per_core))
            );
        }
        let _ = writeln!(
            out,
            "\nThe same path answering DO queries for 1,000 names of the zone signed online, its signature \
             cache warm (the cached RRSIGs copied as they are kept, in wire form): {:.0} answers/s, {} × \
             unsigned. (Unsigned and signed timed in turn {} times; the pair with the median ratio shown, \
             here and below, throughput and latency each their own.)",
            g.signed_answers_per_core,
            ratio(g.signed_answers_per_core, Some(g.unsigned_answers_per_core)),
            g.rounds
        );
        out.push_str(
            "\n`dnslb run --no-xdp` serving the zone signed online (`--sign`) and unsigned, DO queries \
             (the flood, then dnsperf at the fixed rate), once the cache is warm (the mix sent \
             until the cache stops growing).\n\n| mix | signed replies/s | unsigned replies/s | signed / unsigned | p99 signed | p99 unsigned |\n|---|---:|---:|---:|---:|---:|\n",
        );
        for ((mix, signed, plain), (_, signed_latency, plain_latency)) in
            g.throughput.iter().zip(&g.latency)
        {
            let _ = writeln!(
                out,
                "| {mix} | {:.0} | {:.0} | {} | {} | {} |",
                signed.replies_per_second,
                plain.replies_per_second,
                ratio(signed.replies_per_second, Some(plain.replies_per_second)),
                micros(signed_latency.p99),
                micros(plain_latency.p99),
            );
        }
        let f = &g.flip;
        let _ = writeln!(
            out,
            "\nA health flip: {} failover services share one primary endpoint, checked every 100 ms \
             (fall 2, timeout 50 ms, so the verdict takes up to {}); it stops, and a client sweeps DO \
             queries over the services until every one answers its secondary with an RRSIG. The verdict \
             came after the last answer of the primary, so the time from that answer to the last service \
             signed bounds from above the time from the verdict to every new answer signed. A sweep with \
             nothing to sign, the reference, takes {}.\n\n| services | stop to all signed | stop to the last answer of the primary | verdict to all signed, at most | × sweep |\n|---:|---:|---:|---:|---:|",
            f.services,
            micros(f.verdict_bound),
            micros(f.sweep),
        );
        let after = f.after_verdict();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            f.services,
            micros(f.all_signed),
            micros(f.last_old),
            micros(after),
            ratio(after.as_secs_f64(), Some(f.sweep.as_secs_f64())),
        );
        let _ = writeln!(
            out,
            "\nThe signature cache after the largest mix: {} RRsets cached; {:.0} bytes each by the cache's \
             own count, {:.0} bytes each by the daemon's resident memory grown while it filled.",
            g.cached_rrsets, g.cache_bytes_per_rrset, g.rss_bytes_per_rrset
        );
    }
    out
}

impl Report<'_> {
    /// (target, figure, verdict) for every target of this run: those
    /// against a responder this machine cannot run are not judged.
    fn targets(&self) -> Vec<(String, String, Verdict)> {
        let mut targets = Vec::new();
        // Each mix once, in order.
        let mut mixes: Vec<&str> = Vec::new();
        for m in self.measured {
            if !mixes.contains(&m.mix) {
                mixes.push(m.mix);
            }
        }
        let mut compare = |what: &str, ours: Responder, theirs: Responder, at_least: f64| {
            if let Some((_, reason)) = self.unavailable.iter().find(|(r, _)| *r == theirs) {
                targets.push((
                    format!("{what} ≥ {at_least}"),
                    format!("{} could not run here: {reason}", theirs.label()),
                    Verdict::NotJudged,
                ));
                return;
            }
            for mix in &mixes {
                // On the weighted mix, dnslb's XDP figure is its weighted pick.
                let ours = match ours {
                    Responder::DnslbXdp if mix.contains("weighted") => Responder::DnslbXdpWeighted,
                    ours => ours,
                };
                if let (Some(a), Some(b)) = (self.rate(ours, mix), self.rate(theirs, mix)) {
                    let r = a / b;
                    targets.push((
                        format!("{what} ≥ {at_least} ({mix})"),
                        format!("{r:.3}"),
                        Verdict::of(r >= at_least),
                    ));
                }
            }
        };
        compare(
            "dnslb XDP / floor, replies/s",
            Responder::DnslbXdp,
            Responder::Floor,
            0.9,
        );
        compare(
            "dnslb XDP / Knot XDP, replies/s",
            Responder::DnslbXdp,
            Responder::KnotXdp,
            2.5,
        );
        compare(
            "dnslb --no-xdp / Knot UDP, replies/s",
            Responder::DnslbUserspace,
            Responder::KnotUdp,
            1.0,
        );
        if let Some(floor) = self.micro("floor") {
            for (case, at_most) in [
                ("dnslb hit (3", 2.0),
                ("dnslb hit, 250-byte", 3.0),
                ("dnslb miss", 1.5),
                ("dnslb hit, DO + cookie", 2.5),
            ] {
                if let Some(ns) = self.micro(case) {
                    let r = ns / floor;
                    targets.push((
                        format!("kernel ns per packet / floor ≤ {at_most} ({case}…)"),
                        format!("{r:.3}"),
                        Verdict::of(r <= at_most),
                    ));
                }
            }
        }
        for share in self.resolvers.iter().filter(|s| !s.validating) {
            targets.push((
                format!(
                    "{}: hot-name queries answered by XDP ≥ 99%",
                    share.kind.name()
                ),
                format!("{:.1}%", share.fraction() * 100.0),
                Verdict::of(share.fraction() >= 0.99),
            ));
        }
        let h = self.hotload;
        targets.push((
            format!("{} hot names serving in < 10 s", h.names),
            format!("{:.2} s", h.total_seconds),
            Verdict::of(h.total_seconds < 10.0),
        ));
        targets.push((
            "daemon memory < 1 GiB".into(),
            format!("{:.0} MiB", h.daemon_peak_bytes as f64 / 1048576.0),
            Verdict::of(h.daemon_peak_bytes < 1 << 30),
        ));
        for h in self
            .health
            .iter()
            .filter(|h| h.placement == crate::health::Placement::AcrossVeth)
        {
            let crate::health::Work::Check(kind) = h.work else {
                continue;
            };
            targets.push((
                format!(
                    "{} endpoints checked every second ({kind}): probes keep pace (≥ 90% of endpoints per second)",
                    h.endpoints
                ),
                format!("{:.0} probes/s", h.probes_per_second),
                Verdict::of(h.probes_per_second >= h.endpoints as f64 * 0.9),
            ));
            targets.push((
                format!(
                    "{} endpoints checked every second ({kind}) < 0.25 core",
                    h.endpoints
                ),
                format!("{:.3} cores", h.daemon_cores),
                Verdict::of(h.daemon_cores < 0.25),
            ));
        }
        for (mix, signed, plain) in &self.signing.throughput {
            let r = signed.replies_per_second / plain.replies_per_second.max(1.0);
            targets.push((
                format!("DO replies/s, zone signed online / unsigned ≥ 0.8 ({mix})"),
                format!("{r:.3}"),
                Verdict::of(r >= 0.8),
            ));
        }
        for (mix, signed, plain) in &self.signing.latency {
            // At least 0.8× as fast: a p99 at most 1.25× the unsigned one.
            let r = signed.p99.as_secs_f64() / plain.p99.as_secs_f64().max(f64::MIN_POSITIVE);
            targets.push((
                format!("DO p99, zone signed online / unsigned ≤ 1.25 ({mix})"),
                format!("{r:.3}"),
                Verdict::of(r <= 1.25),
            ));
        }
        targets.extend(kernel_signing_targets(
            self.kernel_signing,
            self.micro,
            self.resolvers,
        ));
        targets.extend(weighing_targets(self.weighing, self.micro));
        let flip = &self.signing.flip;
        let after = flip.after_verdict();
        targets.push((
            format!(
                "{} services re-signed and served within 1 s of a health verdict",
                flip.services
            ),
            micros(after),
            Verdict::of(after <= Duration::from_secs(1)),
        ));
        targets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(replies_per_second: f64) -> Throughput {
        Throughput {
            sent: 1_000_000,
            replies: replies_per_second as u64,
            replies_per_second,
        }
    }

    #[test]
    fn targets_against_a_peer_that_could_not_run_are_not_judged() {
        let measured = [Responder::Floor, Responder::DnslbXdp].map(|responder| Measured {
            responder,
            mix: "one hot name",
            throughput: vec![run(if responder == Responder::Floor {
                1000.0
            } else {
                950.0
            })],
            latency: None,
        });
        let unavailable = [(
            Responder::KnotXdp,
            "libbpf: program of this type cannot use helper bpf_xdp_adjust_meta#54".to_owned(),
        )];
        let load = |signed| HotLoad {
            names: 1,
            signed,
            zone_seconds: 0.0,
            fill_seconds: 0.0,
            total_seconds: 1.0,
            daemon_peak_bytes: 1,
            map_bytes: 1,
            signature_map_bytes: 1,
        };
        let report = Report {
            settings: &Settings {
                flood_seconds: 1,
                dnsperf_seconds: 1,
                dnsperf_qps: 1,
                micro_runs: 1,
                rounds: 1,
            },
            measured: &measured,
            unavailable: &unavailable,
            micro: &[],
            resolvers: &[],
            hotload: &load(false),
            health: &[],
            cold: &ColdStarts {
                cold: Vec::new(),
                warm: Vec::new(),
            },
            signing: &SigningCost {
                per_core: Vec::new(),
                unsigned_answers_per_core: 1.0,
                signed_answers_per_core: 1.0,
                throughput: Vec::new(),
                latency: Vec::new(),
                flip: crate::signing::Flip {
                    services: 1,
                    all_signed: Duration::ZERO,
                    last_old: Duration::ZERO,
                    verdict_bound: Duration::ZERO,
                    sweep: Duration::ZERO,
                },
                cache_bytes_per_rrset: 0.0,
                rss_bytes_per_rrset: 0.0,
                cached_rrsets: 0,
                rounds: 3,
            },
            kernel_signing: &KernelSigning {
                throughput: Vec::new(),
                unsigned_load: load(false),
                signed_load: load(true),
            },
            weighing: &ReportToKernel {
                rounds: vec![Duration::from_millis(3)],
                calls: vec![Duration::from_millis(2)],
            },
        };
        let targets = report.targets();
        let verdict = |start: &str| {
            targets
                .iter()
                .find(|(target, _, _)| target.starts_with(start))
                .map(|(_, figure, verdict)| (figure.clone(), *verdict))
        };
        assert_eq!(
            verdict("dnslb XDP / floor"),
            Some(("0.950".to_owned(), Verdict::Met))
        );
        let (figure, knot) = verdict("dnslb XDP / Knot XDP").expect("listed");
        assert_eq!(knot, Verdict::NotJudged);
        assert!(figure.contains("bpf_xdp_adjust_meta"), "{figure}");
        let text = report.render();
        assert!(
            text.contains("**Knot DNS (XDP) could not run on this machine**"),
            "{text}"
        );
        assert!(!text.contains("| Knot DNS (XDP) |"), "no rows: {text}");
    }
}
