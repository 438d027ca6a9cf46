//! `dnslb run`: load zones, start the servers, attach the XDP program and
//! fill its maps, serve until told to stop, then detach.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    thread,
    time::Instant,
};

use anyhow::{Context, bail};
use tokio::{
    signal::unix::{SignalKind, signal},
    task::JoinSet,
};

use crate::{
    cli::{RunArgs, ZoneArg},
    config::{BranchLabels, Config, load_config},
    dataplane::{Dataplane, DataplaneOptions, SyncReport, sync_hot},
    metrics::{ExtraSource, KernelSource, Metrics, serve_metrics},
    server::{Responder, serve_tcp, serve_udp},
    steering::{Steering, check_services_in_zones},
    zone::{Catalog, WireName, load_zone},
};

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let (catalog, config) = load_all(&args, None)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args, catalog, config))
}

/// The policy file (if any) and every zone, from the command line and
/// from the file; the first problem stops the load with its error.
pub fn load_all(
    args: &RunArgs,
    labels: Option<&BranchLabels>,
) -> anyhow::Result<(Catalog, Config)> {
    let config = match &args.config {
        Some(path) => load_config(path, labels)?,
        None => Config::default(),
    };
    let zones: Vec<ZoneArg> = args.zones.iter().chain(&config.zones).cloned().collect();
    let catalog = load_catalog(&zones)?;
    check_services_in_zones(&config, &catalog)?;
    Ok((catalog, config))
}

/// The names whose A answers a service owns: zone sync leaves them alone.
fn steered_names(config: &Config) -> HashSet<WireName> {
    config
        .services
        .iter()
        .filter(|service| service.record_type == hickory_proto::rr::RecordType::A)
        .map(|service| service.name.clone())
        .collect()
}

/// Loads every zone; the first bad file stops start-up with its error.
pub fn load_catalog(zones: &[ZoneArg]) -> anyhow::Result<Catalog> {
    let mut catalog = Catalog::default();
    for zone in zones {
        let started = Instant::now();
        let loaded = load_zone(&zone.origin, &zone.file)?;
        log::info!(
            "loaded zone {} from {}: {} names in {:.2} s",
            zone.origin,
            zone.file.display(),
            loaded.nodes().count(),
            started.elapsed().as_secs_f64()
        );
        catalog.insert(loaded);
    }
    Ok(catalog)
}

async fn serve(args: RunArgs, catalog: Catalog, config: Config) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let responder = Arc::new(Responder::new(catalog.clone(), args.edns_payload));
    let mut tasks = JoinSet::new();
    let sockets = args
        .udp_sockets
        .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()));
    serve_udp(args.listen, sockets, responder.clone(), metrics.clone())
        .with_context(|| format!("binding UDP {}", args.listen))?;
    serve_tcp(args.listen, responder.clone(), metrics.clone(), &mut tasks)
        .await
        .with_context(|| format!("binding TCP {}", args.listen))?;

    let dataplane = match (&args.iface, args.no_xdp) {
        (Some(_), false) => Some(Arc::new(Mutex::new(load_dataplane(
            &args, &catalog, &config,
        )?))),
        _ => {
            log::info!("XDP disabled: answering every query from userspace");
            None
        }
    };
    let services = config.services.len();
    let steering = Steering::start(config, responder.clone(), dataplane.clone())
        .context("starting health checks and routing policies")?;
    if services > 0 {
        log::info!("{services} services steered by the policy file");
    }
    if let (Some(iface), Some(dataplane)) = (&args.iface, &dataplane) {
        attach_dataplane(&args, iface, dataplane)?;
    }
    if let Some(listen) = args.metrics {
        let source = dataplane.clone();
        let kernel: KernelSource = Arc::new(move || {
            let dataplane = source.as_ref()?.lock().ok()?;
            dataplane.counters().ok()
        });
        let steering_metrics = steering.clone();
        let extra: ExtraSource = Arc::new(move |out| steering_metrics.render_metrics(out));
        serve_metrics(listen, metrics.clone(), kernel, extra, &mut tasks)
            .await
            .with_context(|| format!("binding the metrics endpoint {listen}"))?;
        log::info!("metrics on http://{listen}/metrics");
    }
    log::info!("serving DNS on {}", args.listen);

    let outcome = wait_for_stop(&mut tasks, || {
        reload(&args, &responder, &steering, dataplane.as_deref())
    })
    .await;
    drop(steering);
    if let Some(dataplane) = dataplane {
        let mut dataplane = dataplane
            .lock()
            .map_err(|_| anyhow::anyhow!("dataplane lock poisoned"))?;
        dataplane.detach().context("detaching the XDP program")?;
        log::info!("XDP program detached");
    }
    outcome
}

const RIGHTS: &str = "XDP needs root or CAP_BPF and CAP_NET_ADMIN; \
                      with --no-xdp dnslb serves from userspace alone";

/// Loads the XDP program and fills its maps with the zones' hot names.
fn load_dataplane(args: &RunArgs, catalog: &Catalog, config: &Config) -> anyhow::Result<Dataplane> {
    let options = DataplaneOptions::new(args.listen.port(), args.edns_payload, args.hot_capacity);
    let mut dataplane =
        Dataplane::load(options).with_context(|| format!("loading the XDP program ({RIGHTS})"))?;
    let started = Instant::now();
    let steered = steered_names(config);
    let report = sync_hot(&mut dataplane, None, catalog, &|name| {
        steered.contains(name)
    })
    .context("filling the kernel map (is --hot-capacity large enough?)")?;
    log_sync(&report);
    log::info!(
        "{} hot names written to the kernel in {:.2} s",
        report.written,
        started.elapsed().as_secs_f64()
    );
    Ok(dataplane)
}

fn attach_dataplane(
    args: &RunArgs,
    iface: &str,
    dataplane: &Mutex<Dataplane>,
) -> anyhow::Result<()> {
    let mut dataplane = dataplane
        .lock()
        .map_err(|_| anyhow::anyhow!("dataplane lock poisoned"))?;
    dataplane.attach(iface, args.xdp_mode).with_context(|| {
        format!(
            "attaching the XDP program to {iface} in {:?} mode ({RIGHTS})",
            args.xdp_mode
        )
    })?;
    log::info!("XDP program attached to {iface}");
    Ok(())
}

fn log_sync(report: &SyncReport) {
    for skip in &report.skipped {
        log::warn!("{} is answered from userspace: {}", skip.name, skip.reason);
    }
}

/// SIGHUP: reads the policy file and every zone file again. Only if all
/// of them load are they swapped in: the services first (checks restarted
/// with the verdicts they had, vanished services taken out of the kernel),
/// then the kernel's zone entries rewritten and its vanished names removed
/// (see `sync_hot`), then the daemon's catalog replaced; a query passed on
/// in between gets the old zones' answer. Otherwise everything being served
/// stays as it is and the error says which file and line.
fn reload(
    args: &RunArgs,
    responder: &Responder,
    steering: &Steering,
    dataplane: Option<&Mutex<Dataplane>>,
) {
    let labels = steering.branch_labels();
    let (catalog, config) = match load_all(args, Some(&labels)) {
        Ok(loaded) => loaded,
        Err(error) => {
            log::error!("reload failed, still serving the previous configuration: {error:#}");
            return;
        }
    };
    let steered = steered_names(&config);
    if let Err(error) = steering.reload(config) {
        log::error!("reloading the policy file: {error:#}");
    }
    let old = responder.catalog();
    let report = dataplane.map(|dataplane| {
        let mut dataplane = dataplane
            .lock()
            .map_err(|_| anyhow::anyhow!("dataplane lock poisoned"))?;
        anyhow::Ok(sync_hot(&mut dataplane, Some(&old), &catalog, &|name| {
            steered.contains(name)
        })?)
    });
    responder.set_catalog(catalog);
    match report {
        Some(Ok(report)) => {
            log_sync(&report);
            log::info!(
                "reloaded; kernel: {} names written, {} removed",
                report.written,
                report.removed
            );
        }
        Some(Err(error)) => {
            log::error!("reloaded, but updating the kernel map failed: {error:#}")
        }
        None => log::info!("reloaded"),
    }
}

/// Serves until SIGTERM or SIGINT (or a server task fails), calling
/// `reload` on each SIGHUP.
async fn wait_for_stop(
    tasks: &mut JoinSet<std::io::Result<()>>,
    reload: impl Fn(),
) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = terminate.recv() => log::info!("SIGTERM: stopping"),
            _ = interrupt.recv() => log::info!("SIGINT: stopping"),
            _ = hangup.recv() => {
                log::info!("SIGHUP: reloading the policy file and zones");
                tokio::task::block_in_place(&reload);
                continue;
            }
            Some(ended) = tasks.join_next() => match ended {
                Ok(Ok(())) => bail!("a server task ended"),
                Ok(Err(error)) => bail!("a server task failed: {error}"),
                Err(error) => bail!("a server task panicked: {error}"),
            },
        }
        return Ok(());
    }
}
