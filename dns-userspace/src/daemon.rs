//! `dnslb run`: load zones, start the servers, attach the XDP program and
//! fill its maps, serve until told to stop, then detach.

use std::{
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
    dataplane::{Dataplane, DataplaneOptions, SyncReport, sync_hot},
    metrics::{KernelSource, Metrics, serve_metrics},
    server::{Responder, serve_tcp, serve_udp},
    zone::{Catalog, load_zone},
};

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let catalog = load_catalog(&args.zones)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args, catalog))
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

async fn serve(args: RunArgs, catalog: Catalog) -> anyhow::Result<()> {
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
        (Some(iface), false) => Some(Arc::new(Mutex::new(start_dataplane(
            &args, iface, &catalog,
        )?))),
        _ => {
            log::info!("XDP disabled: answering every query from userspace");
            None
        }
    };
    if let Some(listen) = args.metrics {
        let source = dataplane.clone();
        let kernel: KernelSource = Arc::new(move || {
            let dataplane = source.as_ref()?.lock().ok()?;
            dataplane.counters().ok()
        });
        serve_metrics(listen, metrics.clone(), kernel, &mut tasks)
            .await
            .with_context(|| format!("binding the metrics endpoint {listen}"))?;
        log::info!("metrics on http://{listen}/metrics");
    }
    log::info!("serving DNS on {}", args.listen);

    let outcome = wait_for_stop(&mut tasks, || {
        reload(&args.zones, &responder, dataplane.as_deref())
    })
    .await;
    if let Some(dataplane) = dataplane {
        let mut dataplane = dataplane
            .lock()
            .map_err(|_| anyhow::anyhow!("dataplane lock poisoned"))?;
        dataplane.detach().context("detaching the XDP program")?;
        log::info!("XDP program detached");
    }
    outcome
}

fn start_dataplane(args: &RunArgs, iface: &str, catalog: &Catalog) -> anyhow::Result<Dataplane> {
    const RIGHTS: &str = "XDP needs root or CAP_BPF and CAP_NET_ADMIN; \
                          with --no-xdp dnslb serves from userspace alone";
    let options = DataplaneOptions {
        port: args.listen.port(),
        edns_payload: args.edns_payload,
        hot_capacity: args.hot_capacity,
    };
    let mut dataplane =
        Dataplane::load(options).with_context(|| format!("loading the XDP program ({RIGHTS})"))?;
    let started = Instant::now();
    let report = sync_hot(&mut dataplane, None, catalog)
        .context("filling the kernel map (is --hot-capacity large enough?)")?;
    log_sync(&report);
    log::info!(
        "{} hot names written to the kernel in {:.2} s",
        report.written,
        started.elapsed().as_secs_f64()
    );
    dataplane.attach(iface, args.xdp_mode).with_context(|| {
        format!(
            "attaching the XDP program to {iface} in {:?} mode ({RIGHTS})",
            args.xdp_mode
        )
    })?;
    log::info!("XDP program attached to {iface}");
    Ok(dataplane)
}

fn log_sync(report: &SyncReport) {
    for skip in &report.skipped {
        log::warn!("{} is answered from userspace: {}", skip.name, skip.reason);
    }
}

/// SIGHUP: reads every zone file again. Only if all of them load are they
/// swapped in: the kernel's entries rewritten and its vanished names
/// removed (see `sync_hot`), then the daemon's catalog replaced; a query
/// passed on in between gets the old zones' answer. Otherwise the zones
/// being served stay as they are and the error says which file and line.
fn reload(zones: &[ZoneArg], responder: &Responder, dataplane: Option<&Mutex<Dataplane>>) {
    let catalog = match load_catalog(zones) {
        Ok(catalog) => catalog,
        Err(error) => {
            log::error!("reload failed, still serving the previous zones: {error:#}");
            return;
        }
    };
    let old = responder.catalog();
    let report = dataplane.map(|dataplane| {
        let mut dataplane = dataplane
            .lock()
            .map_err(|_| anyhow::anyhow!("dataplane lock poisoned"))?;
        anyhow::Ok(sync_hot(&mut dataplane, Some(&old), &catalog)?)
    });
    responder.set_catalog(catalog);
    match report {
        Some(Ok(report)) => {
            log_sync(&report);
            log::info!(
                "zones reloaded; kernel: {} names written, {} removed",
                report.written,
                report.removed
            );
        }
        Some(Err(error)) => {
            log::error!("zones reloaded, but updating the kernel map failed: {error:#}")
        }
        None => log::info!("zones reloaded"),
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
                log::info!("SIGHUP: reloading the zones");
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
