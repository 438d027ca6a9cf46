//! `dnslb run`: load zones, start the servers, attach the XDP program and
//! fill its maps, serve until told to stop, then detach.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::{
    signal::unix::{SignalKind, signal},
    task::JoinSet,
};

use crate::{
    cli::{RunArgs, ZoneArg},
    config::{BranchLabels, Config, load_config},
    dataplane::{Dataplane, DataplaneOptions, HotType, SyncReport, sync_hot},
    metrics::{ExtraSource, KernelSource, Metrics, serve_metrics},
    server::{CookieKeys, Responder, serve_tcp, serve_udp},
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

/// The names and types whose answers a service owns: zone sync leaves
/// them alone.
fn steered_names(config: &Config) -> HashSet<(WireName, HotType)> {
    config
        .services
        .iter()
        .filter_map(|service| Some((service.name.clone(), HotType::of(service.record_type)?)))
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
    let cookies = Arc::new(Mutex::new(Cookies::start(&args)?));
    publish_cookies(&cookies, &responder, dataplane.as_deref())?;
    tasks.spawn(keep_cookies(
        cookies.clone(),
        responder.clone(),
        dataplane.clone(),
    ));
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
        reload(&args, &responder, &steering, dataplane.as_deref());
        reload_cookies(&cookies, &responder, dataplane.as_deref());
    })
    .await;
    drop(steering);
    if let Some(dataplane) = dataplane {
        let mut dataplane = lock(&dataplane)?;
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
    let report = sync_hot(&mut dataplane, None, catalog, &|name, hot_type| {
        steered.contains(&(WireName::from(name), hot_type))
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
    let mut dataplane = lock(dataplane)?;
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
        let mut dataplane = lock(dataplane)?;
        anyhow::Ok(sync_hot(
            &mut dataplane,
            Some(&old),
            &catalog,
            &|name, hot_type| steered.contains(&(WireName::from(name), hot_type)),
        )?)
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

/// The cookie secrets in use, and where they come from.
struct Cookies {
    keys: CookieKeys,
    file: Option<std::path::PathBuf>,
    /// How often a generated secret is replaced (never for a file's).
    rotation: Option<Duration>,
    rotated: Instant,
}

impl Cookies {
    fn start(args: &RunArgs) -> anyhow::Result<Cookies> {
        let keys = match &args.cookie_secret_file {
            Some(file) => CookieKeys::read(file)?,
            None => CookieKeys::generated().context("making a cookie secret")?,
        };
        let rotation = (args.cookie_secret_file.is_none() && args.cookie_rotation > 0)
            .then(|| Duration::from_secs(args.cookie_rotation));
        Ok(Cookies {
            keys,
            file: args.cookie_secret_file.clone(),
            rotation,
            rotated: Instant::now(),
        })
    }
}

/// Gives the responder and the kernel the current secrets and clock offset.
fn publish_cookies(
    cookies: &Mutex<Cookies>,
    responder: &Responder,
    dataplane: Option<&Mutex<Dataplane>>,
) -> anyhow::Result<()> {
    let secrets = lock(cookies)?.keys.secrets();
    responder.set_cookie_secrets(secrets);
    if let Some(dataplane) = dataplane {
        lock(dataplane)?
            .set_cookie_secrets(&secrets)
            .context("writing the cookie secrets to the kernel")?;
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> anyhow::Result<std::sync::MutexGuard<'_, T>> {
    mutex
        .lock()
        .map_err(|_| anyhow::anyhow!("a lock was poisoned by a panic"))
}

/// Every minute: rotates a generated secret when it is due, and refreshes
/// the kernel's clock offset (the wall clock may have been stepped).
async fn keep_cookies(
    cookies: Arc<Mutex<Cookies>>,
    responder: Arc<Responder>,
    dataplane: Option<Arc<Mutex<Dataplane>>>,
) -> std::io::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let rotated = lock(&cookies).map(|mut cookies| {
            let due = cookies
                .rotation
                .is_some_and(|every| cookies.rotated.elapsed() >= every);
            if due {
                match cookies.keys.rotated() {
                    Ok(keys) => {
                        cookies.keys = keys;
                        cookies.rotated = Instant::now();
                    }
                    Err(error) => log::error!("rotating the cookie secret: {error}"),
                }
            }
            due
        });
        match rotated {
            Ok(true) => log::info!("cookie secret rotated; the previous one is still accepted"),
            Ok(false) => {}
            Err(error) => log::error!("{error:#}"),
        }
        if let Err(error) = publish_cookies(&cookies, &responder, dataplane.as_deref()) {
            log::error!("{error:#}");
        }
    }
}

/// SIGHUP: reads the cookie secret file again, if there is one; a bad file
/// is logged and the secrets in use stay.
fn reload_cookies(
    cookies: &Mutex<Cookies>,
    responder: &Responder,
    dataplane: Option<&Mutex<Dataplane>>,
) {
    let reread = lock(cookies).and_then(|mut cookies| {
        let Some(file) = cookies.file.clone() else {
            return Ok(false);
        };
        cookies.keys = CookieKeys::read(&file)?;
        Ok(true)
    });
    match reread {
        Ok(false) => {}
        Ok(true) => match publish_cookies(cookies, responder, dataplane) {
            Ok(()) => log::info!("cookie secrets reloaded"),
            Err(error) => log::error!("{error:#}"),
        },
        Err(error) => {
            log::error!("reloading the cookie secrets failed, keeping the ones in use: {error:#}")
        }
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
