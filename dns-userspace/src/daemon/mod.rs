//! `dnslb run`: load zones, start the servers, attach the XDP program and
//! fill its maps, serve (and take changes through the control API and
//! SIGHUP) until told to stop, then detach.
//!
//! `live` holds the running state and the one path every change takes;
//! `control` answers the control API from it; `cookies` keeps the DNS
//! cookie secrets.

mod anycast;
mod control;
mod cookies;
mod fleet;
mod kept;
mod live;
mod policy_edit;
mod privileges;
mod secondary;
mod serials;
mod signing;
mod simulate;
#[cfg(test)]
mod tests;

use std::{net::SocketAddr, sync::Arc, thread, time::Instant};

use anyhow::{Context, bail};
use tokio::{
    signal::unix::{SignalKind, signal},
    task::JoinSet,
};

pub use live::{ChangeError, Live, LiveParts, Loaded, load_at_start};

use self::{
    anycast::Anycast,
    cookies::{Cookies, keep_cookies, publish_cookies, reload_cookies},
    fleet::Fleet,
    privileges::{Target, forbid_new_privileges, raise_open_files_limit},
};
use crate::{
    api::{
        self, ControlPlane,
        server::{ControlListeners, TcpControl},
    },
    backends::Backends,
    cli::RunArgs,
    cluster::ClusterArgs,
    dataplane::{
        self, Dataplane, DataplaneOptions, RrsetSigner, SharedDataplane,
        local::{self, Local},
        sync_hot,
    },
    hooks::Hooks,
    metrics::{Metrics, kernel::KernelCollector, serve_metrics},
    server::{RateLimiter, Responder, Signers, SigningCollector, serve_tcp, serve_udp},
    shared::Shared,
    steering::{Steering, SteeringCollector, steered_names},
    zone::WireName,
};

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let user = args.user.as_deref().map(Target::lookup).transpose()?;
    if user.is_some() {
        // Before the runtime's threads exist, so that all of them have it.
        forbid_new_privileges()?;
    }
    if let Some(limit) = raise_open_files_limit() {
        tracing::info!("up to {limit} open files");
    }
    let loaded = load_at_start(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args, loaded, user))
}

async fn serve(args: RunArgs, mut loaded: Loaded, user: Option<Target>) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let responder = Arc::new(Responder::new(loaded.catalog.clone(), args.edns_payload));
    responder.set_signers(std::mem::take(&mut loaded.signing).install());
    responder.count_transfers_in(metrics.zone_transfers.clone());
    metrics.register(Box::new(SigningCollector::new(Arc::downgrade(&responder))));
    responder.set_transfer_rules(live::transfer_rules(&loaded.config));
    let mut tasks = JoinSet::new();
    let sockets = args
        .udp_sockets
        .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()));

    let dataplane: Option<SharedDataplane> = match (&args.iface, args.no_xdp) {
        (Some(_), false) => Some(Arc::new(Shared::new(
            "the kernel maps",
            load_dataplane(&args, &loaded, &responder.signers())?,
        ))),
        _ => {
            tracing::info!("XDP disabled: answering every query from userspace");
            None
        }
    };
    let limiter = rate_limiter(&args, dataplane.as_ref(), sockets)?;
    serve_udp(
        args.listen,
        sockets,
        responder.clone(),
        metrics.clone(),
        &limiter,
    )
    .with_context(|| format!("binding UDP {}", args.listen))?;
    serve_tcp(args.listen, responder.clone(), metrics.clone(), &mut tasks)
        .await
        .with_context(|| format!("binding TCP {}", args.listen))?;
    if let Some(dataplane) = &dataplane
        && let Some(logger) = dataplane.lock()?.take_logger()
    {
        tasks.spawn(dataplane::log::forward(logger));
        tracing::info!("logging the XDP program's decisions (--xdp-log)");
    }
    let cookies = Arc::new(Shared::new("the cookie secrets", Cookies::start(&args)?));
    publish_cookies(&cookies, &responder, dataplane.as_deref())?;
    tasks.spawn(keep_cookies(
        cookies.clone(),
        responder.clone(),
        dataplane.clone(),
    ));
    metrics.register(Box::new(KernelCollector::new(
        dataplane.clone(),
        metrics.userspace_counts(),
    )));
    if let Some(listen) = args.metrics {
        serve_metrics(listen, metrics.clone(), &mut tasks)
            .await
            .with_context(|| format!("binding the metrics endpoint {listen}"))?;
        tracing::info!("metrics on http://{listen}/metrics");
    }
    let control = bind_control(&args).await?;
    if let (Some(iface), Some(dataplane)) = (&args.iface, &dataplane) {
        // The anycast interface is the one at start (as `[anycast]` is
        // read at start).
        let anycast = loaded
            .config
            .anycast
            .as_ref()
            .map(|spec| spec.interface.clone());
        let local = Local::read(iface, anycast.as_deref(), args.listen)
            .with_context(|| format!("reading {iface}'s addresses"))?;
        local
            .write(dataplane, &args.rate_limit.limit())
            .context("writing the addresses the kernel answers on")?;
        tasks.spawn(local::follow(
            dataplane.clone(),
            iface.clone(),
            anycast,
            args.listen,
            args.rate_limit.limit(),
            local,
        ));
        attach_dataplane(&args, iface, dataplane)?;
    }
    // Everything that needs root is done: what follows (health checks,
    // hooks, function instances) runs as --user from its start.
    if let Some(user) = &user {
        // The control socket becomes the user's, so that `dnslb` run as
        // the user can reach it, and so does the state directory, which
        // the user writes.
        std::fs::create_dir_all(&args.state_dir)
            .with_context(|| format!("making {}", args.state_dir.display()))?;
        for path in [&args.control_socket, &args.state_dir] {
            nix::unistd::chown(path, Some(user.uid()), Some(user.gid()))
                .with_context(|| format!("giving {} to --user", path.display()))?;
        }
        user.switch()?;
        tracing::info!(
            "running as uid {} gid {}, with no capabilities and no_new_privs",
            user.uid(),
            user.gid()
        );
    }

    let services = loaded.config.services.len();
    let hooks = Arc::new(Hooks::new(metrics.registry(), args.state_dir.clone()));
    hooks.set(&loaded.config.hooks);
    // The drains and weights in force when the daemon last ran: in place
    // before the first answer is written.
    let kept = kept::Kept::new(args.state_dir.clone());
    let overrides = kept.overrides()?;
    let steering = Steering::start(
        loaded.config.clone(),
        responder.clone(),
        dataplane.clone(),
        hooks.clone(),
        overrides,
    )
    .context("starting health checks and routing policies")?;
    let kernel_signatures = dataplane
        .clone()
        .map(|dataplane| signing::KernelSignatures::new(dataplane, steering.clone()));
    tasks.spawn(signing::keep_signing(
        responder.clone(),
        kernel_signatures,
        kept::Kept::new(args.state_dir.clone()),
    ));
    let backends = Backends::new(
        steering.clone(),
        args.state_dir.clone(),
        metrics.registry(),
        hooks.clone(),
    );
    backends
        .apply(&loaded.config.sources)
        .context("starting the pools' sources")?;
    if services > 0 {
        tracing::info!("{services} services steered by the policy file");
    }
    if let Some(dataplane) = &dataplane {
        // A previous daemon's entries that this configuration no longer
        // has: answered until now, as the previous daemon did.
        let mut dataplane = dataplane.lock()?;
        if let Some(adopted) = dataplane.adopted() {
            let removed = dataplane
                .remove_stale()
                .context("removing what the previous daemon left in the pinned maps")?;
            tracing::info!(
                "took over the pinned maps: {} entries from the previous daemon, {removed} no longer served",
                adopted
            );
        }
    }
    metrics.register(Box::new(SteeringCollector::new(Arc::downgrade(&steering))));
    let control_errors = metrics.accept_errors("control");
    let fleet = match &args.fleet.cluster {
        Some(url) => {
            let node = match &args.fleet.node_name {
                Some(node) => node.clone(),
                None => nix::unistd::gethostname()?.to_string_lossy().into_owned(),
            };
            let cluster = ClusterArgs::parse(
                url,
                &args.fleet.cluster_prefix,
                &node,
                fleet::credentials(&args.fleet)?,
            )?;
            Some(Fleet::new(cluster, &metrics))
        }
        None => None,
    };
    let anycast = match (&loaded.config.anycast, &user) {
        (Some(spec), Some(_)) => bail!(
            "[anycast] changes the addresses of {}, which needs CAP_NET_ADMIN, and --user gives it up: run without --user, or without [anycast]",
            spec.interface
        ),
        (Some(_), None) => {
            Some(Anycast::open(kept.anycast_withdrawn()?).context("anycast: opening netlink")?)
        }
        (None, _) => None,
    };
    let live = Arc::new(Live::new(
        args.clone(),
        &loaded,
        LiveParts {
            responder,
            steering,
            backends,
            hooks,
            dataplane: dataplane.clone(),
            cookies,
            metrics,
            fleet: fleet.clone(),
            anycast: anycast.clone(),
        },
    ));
    live.follow_primaries(&loaded.config.zones);
    let following = fleet.map(|fleet| tokio::spawn(fleet::follow(Arc::downgrade(&live), fleet)));
    if let Some(anycast) = &anycast {
        tokio::spawn(anycast::follow(
            anycast.clone(),
            Arc::downgrade(&live.steering),
        ));
    }
    let plane: Arc<dyn ControlPlane> = live.clone();
    control.serve(api::server::router(plane), &control_errors, &mut tasks);
    tracing::info!("serving DNS on {}", args.listen);

    let outcome = wait_for_stop(&mut tasks, || {
        // Logged and counted by `Live`.
        let _ = live.reload();
        reload_cookies(&live.cookies, &live.responder, live.dataplane.as_deref());
    })
    .await;
    // Withdrawn first, answering through the grace period, so that no
    // query routed here in the meantime goes unanswered.
    if let Some(anycast) = &anycast {
        anycast.stop(&live.steering).await;
    }
    if let (Some(following), Some(fleet)) = (following, &live.fleet) {
        // No more verdicts published, then none left.
        following.abort();
        fleet.leave().await;
    }
    drop(live);
    match std::fs::remove_file(&args.control_socket) {
        Ok(()) => {}
        // As --user, in a directory the user may not write (systemd's
        // RuntimeDirectory, which systemd removes itself).
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::debug!("leaving {}: {error}", args.control_socket.display())
        }
        Err(error) => tracing::warn!("removing {}: {error}", args.control_socket.display()),
    }
    match (dataplane, &args.pin) {
        (Some(_), Some(pin)) => tracing::info!(
            "the XDP program stays attached, its maps pinned in {}: the next `dnslb run --pin` takes over (`dnslb detach --pin` removes it)",
            pin.display()
        ),
        (Some(dataplane), None) => {
            dataplane
                .lock()?
                .detach()
                .context("detaching the XDP program")?;
            tracing::info!("XDP program detached");
        }
        (None, _) => {}
    }
    outcome
}

/// The control API's listeners: its unix socket, and TCP (the API with
/// `--control-listen`, the console and the API with `--console`) if asked.
async fn bind_control(args: &RunArgs) -> anyhow::Result<ControlListeners> {
    let addrs: Vec<SocketAddr> = args
        .control_listen
        .into_iter()
        .chain(args.console)
        .collect();
    let tcp = match addrs.is_empty() {
        true => None,
        false => Some(TcpControl {
            addrs,
            token_file: args
                .control_token_file
                .as_deref()
                .context("--control-listen and --console need --control-token-file")?,
        }),
    };
    let listeners = ControlListeners::bind(&args.control_socket, tcp).await?;
    tracing::info!("control API on {}", args.control_socket.display());
    if let Some(addr) = args.control_listen {
        tracing::info!("control API and web console on http://{addr} (bearer token required)");
    }
    if let Some(addr) = args.console {
        tracing::info!("web console on http://{addr} (bearer token required)");
    }
    Ok(listeners)
}

const RIGHTS: &str = "XDP needs root or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN; \
                      with --no-xdp dnslb serves from userspace alone";

/// The rate limit of `--rate-limit`: on the kernel's buckets (their
/// exemptions written there too), or on a table of the daemon's own.
fn rate_limiter(
    args: &RunArgs,
    dataplane: Option<&SharedDataplane>,
    threads: usize,
) -> anyhow::Result<RateLimiter> {
    let limit = args.rate_limit.limit().guard([0; 6]);
    let exempt = args.rate_limit.exempt.clone();
    let Some(dataplane) = dataplane else {
        return Ok(RateLimiter::local(limit, exempt, args.rate_limit.table));
    };
    let mut dataplane = dataplane.lock()?;
    let networks: Vec<_> = exempt.iter().map(|net| (net.ip(), net.prefix())).collect();
    dataplane
        .set_rate_exempt(&networks)
        .context("writing --rate-limit-exempt into the kernel")?;
    Ok(RateLimiter::kernel(limit, exempt, &dataplane, threads)?)
}

/// Loads the XDP program and fills its maps with the zones' hot names,
/// signed where their zones are.
fn load_dataplane(args: &RunArgs, loaded: &Loaded, signers: &Signers) -> anyhow::Result<Dataplane> {
    let (catalog, config) = (&loaded.catalog, &loaded.config);
    let options = DataplaneOptions {
        log: args.xdp_log,
        pin: args.pin.clone(),
        layout: args.map_layout,
        rate_table: args.rate_limit.table,
        ..DataplaneOptions::new(args.listen.port(), args.edns_payload, args.hot_capacity)
    };
    let mut dataplane =
        Dataplane::load(options).with_context(|| format!("loading the XDP program ({RIGHTS})"))?;
    let started = Instant::now();
    let steered = steered_names(config);
    let report = sync_hot(
        &mut dataplane,
        (None, catalog),
        &|name, hot_type| steered.contains(&(WireName::from(name), hot_type)),
        &|origin| online_signer(signers, origin),
    )
    .context("filling the kernel map (is --hot-capacity large enough?)")?;
    for skip in &report.skipped {
        tracing::warn!("{} is answered from userspace: {}", skip.name, skip.reason);
    }
    tracing::info!(
        "{} hot names written to the kernel in {:.2} s",
        report.written,
        started.elapsed().as_secs_f64()
    );
    Ok(dataplane)
}

/// The online signer of the zone at `origin`, for the kernel's entries.
fn online_signer<'a>(signers: &'a Signers, origin: &WireName) -> Option<&'a dyn RrsetSigner> {
    signers
        .get(origin)
        .map(|signer| signer.as_ref() as &dyn RrsetSigner)
}

fn attach_dataplane(
    args: &RunArgs,
    iface: &str,
    dataplane: &Shared<Dataplane>,
) -> anyhow::Result<()> {
    let mut dataplane = dataplane.lock()?;
    dataplane.attach(iface, args.xdp_mode).with_context(|| {
        format!(
            "attaching the XDP program to {iface} in {:?} mode ({RIGHTS})",
            args.xdp_mode
        )
    })?;
    tracing::info!("XDP program attached to {iface}");
    Ok(())
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
            _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
            _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the policy file and zones");
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
