//! The commands that talk to a running daemon: each makes its request
//! through `api::client` and prints the answer as a table (`render`) or,
//! with `--json`, as the daemon sent it.

use std::{
    io::{IsTerminal as _, Write as _},
    time::Duration,
};

use anyhow::Context;
use serde::{Serialize, de::DeserializeOwned};

use super::{
    AnycastCommand, Command, Connection, DnssecCommand, EndpointArgs, EndpointCommand,
    InstanceArgs, ServiceCommand, StatsArgs, ZoneCommand, render,
};
use crate::api::{
    client::{Client, ClientError, Target},
    types::{
        AnycastChange, AnycastStatus, Applied, DnssecZone, EndpointInfo, EndpointRef, HealthRow,
        KeyRoll, LoadReport, LoadValue, Registration, ServiceDetail, ServiceInfo, Stats, Status,
        WeightChange, ZoneInfo, ZoneLoad,
    },
};

/// Runs one of the control commands (not `run`, `check` or
/// `completions`), printing to stdout.
/// With `--json`, a failure is printed to stdout as JSON too
/// (`{"error": "...", "status": 400}`, the status when the daemon refused),
/// so that a script reading stdout always gets JSON.
pub fn control(command: Command) -> anyhow::Result<()> {
    let json = command.connection().is_some_and(|c| c.json);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(dispatch(command));
    if let Err(error) = &result
        && json
    {
        let status = error.chain().find_map(|cause| match cause.downcast_ref() {
            Some(ClientError::Refused { status, .. }) => Some(status.as_u16()),
            _ => None,
        });
        let failure = Failure {
            error: format!("{error:#}"),
            status,
        };
        let text = serde_json::to_string_pretty(&failure)? + "\n";
        std::io::stdout().write_all(text.as_bytes())?;
    }
    result
}

/// A failed control command, as `--json` prints it.
#[derive(Serialize)]
struct Failure {
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
}

fn client(connection: &Connection) -> anyhow::Result<Client> {
    let target = match &connection.connect {
        Some(addr) => {
            let file = connection
                .token_file
                .as_deref()
                .context("--connect needs --token-file")?;
            let token = crate::api::server::read_token(file)?;
            Target::Tcp {
                addr: addr.clone(),
                token,
            }
        }
        None => Target::Unix(connection.socket.clone()),
    };
    Ok(Client::new(target))
}

/// Prints `value` as JSON, or as `table` renders it.
fn show<T: Serialize>(
    connection: &Connection,
    value: &T,
    table: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    let text = if connection.json {
        serde_json::to_string_pretty(value)? + "\n"
    } else {
        table(value)
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

async fn get_and_show<T: Serialize + DeserializeOwned>(
    connection: &Connection,
    path: &str,
    table: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    let value: T = client(connection)?.get(path).await?;
    show(connection, &value, table)
}

/// A zone origin as it goes into a URL path.
fn origin_path(origin: &str) -> String {
    origin.trim_end_matches('.').to_ascii_lowercase()
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Status(c) => get_and_show::<Status>(&c, "/v1/status", render::status).await,
        Command::Zone(zone) => zone_command(zone).await,
        Command::Dnssec(command) => dnssec_command(command).await,
        Command::Service(ServiceCommand::List(c)) => {
            get_and_show::<Vec<ServiceInfo>>(&c, "/v1/services", |s| render::services(s)).await
        }
        Command::Service(ServiceCommand::Show { label, connection }) => {
            let path = format!("/v1/services/{label}");
            get_and_show::<ServiceDetail>(&connection, &path, render::service).await
        }
        Command::Endpoint(endpoint) => endpoint_command(endpoint).await,
        Command::Anycast(command) => {
            let (c, announce) = match command {
                AnycastCommand::Withdraw(c) => (c, false),
                AnycastCommand::Announce(c) => (c, true),
            };
            let change = AnycastChange { announce };
            let status: AnycastStatus = client(&c)?.post("/v1/anycast", Some(&change)).await?;
            show(&c, &status, render::anycast)
        }
        Command::Health(c) => {
            get_and_show::<Vec<HealthRow>>(&c, "/v1/health", |h| render::health(h)).await
        }
        Command::Stats(args) => stats(args).await,
        Command::Reload(c) => {
            let applied: Applied = client(&c)?.post("/v1/reload", None::<&()>).await?;
            show(&c, &applied, render::applied)
        }
        Command::Run(_)
        | Command::Check(_)
        | Command::Completions { .. }
        | Command::Detach { .. } => {
            unreachable!("not a control command")
        }
    }
}

async fn dnssec_command(command: DnssecCommand) -> anyhow::Result<()> {
    let (wanted, connection, ds) = match &command {
        DnssecCommand::Status { zone, connection } => (zone.as_deref(), connection, false),
        DnssecCommand::Ds { zone, connection } => (Some(zone.as_str()), connection, true),
        DnssecCommand::Roll {
            zone,
            key,
            connection,
        } => {
            let path = format!("/v1/dnssec/{}/roll", origin_path(zone));
            let zone: DnssecZone = client(connection)?
                .post(&path, Some(&KeyRoll { key: *key }))
                .await?;
            return show(connection, &zone, |zone| {
                render::dnssec(std::slice::from_ref(zone))
            });
        }
    };
    let mut zones: Vec<DnssecZone> = client(connection)?.get("/v1/dnssec").await?;
    if let Some(wanted) = wanted {
        let wanted = format!("{}.", origin_path(wanted));
        zones.retain(|zone| zone.origin.eq_ignore_ascii_case(&wanted));
        anyhow::ensure!(
            !zones.is_empty(),
            "{wanted} is not a signed zone served here (`dnslb dnssec status` lists them)"
        );
    }
    match ds {
        true => show(connection, &zones, |zones| render::ds_records(zones)),
        false => show(connection, &zones, |zones| render::dnssec(zones)),
    }
}

async fn zone_command(command: ZoneCommand) -> anyhow::Result<()> {
    match command {
        ZoneCommand::List(c) => {
            get_and_show::<Vec<ZoneInfo>>(&c, "/v1/zones", |z| render::zones(z)).await
        }
        ZoneCommand::Show { origin, connection } => {
            let path = format!("/v1/zones/{}", origin_path(&origin));
            get_and_show::<ZoneInfo>(&connection, &path, |zone| {
                render::zones(std::slice::from_ref(zone))
            })
            .await
        }
        ZoneCommand::Load {
            origin,
            file,
            connection,
        } => {
            // The daemon reads the file: give it a path that does not
            // depend on where this command runs.
            let file = std::path::absolute(&file)
                .with_context(|| format!("{}: cannot make the path absolute", file.display()))?;
            let path = format!("/v1/zones/{}", origin_path(&origin));
            let applied: Applied = client(&connection)?.put(&path, &ZoneLoad { file }).await?;
            show(&connection, &applied, render::applied)
        }
        ZoneCommand::Reload { origin, connection } => {
            let client = client(&connection)?;
            let origins = match origin {
                Some(origin) => vec![origin],
                None => client
                    .get::<Vec<ZoneInfo>>("/v1/zones")
                    .await?
                    .into_iter()
                    .map(|zone| zone.origin)
                    .collect(),
            };
            for origin in origins {
                let path = format!("/v1/zones/{}/reload", origin_path(&origin));
                let applied: Applied = client
                    .post(&path, None::<&()>)
                    .await
                    .with_context(|| format!("zone {origin}"))?;
                show(&connection, &applied, |a| {
                    format!("{origin}: {}", render::applied(a))
                })?;
            }
            Ok(())
        }
        ZoneCommand::Remove { origin, connection } => {
            let path = format!("/v1/zones/{}", origin_path(&origin));
            let applied: Applied = client(&connection)?.delete(&path).await?;
            show(&connection, &applied, render::applied)
        }
        ZoneCommand::Release { origin, connection } => {
            let path = format!("/v1/zones/{}/release", origin_path(&origin));
            let applied: Applied = client(&connection)?.post(&path, None::<&()>).await?;
            show(&connection, &applied, render::applied)
        }
    }
}

async fn endpoint_command(command: EndpointCommand) -> anyhow::Result<()> {
    let (path, body, connection) = match command {
        EndpointCommand::List {
            pool,
            overrides,
            connection,
        } => {
            let path = match pool {
                Some(pool) => format!("/v1/endpoints?pool={pool}"),
                None => "/v1/endpoints".to_owned(),
            };
            let mut listed: Vec<EndpointInfo> = client(&connection)?.get(&path).await?;
            if overrides {
                listed.retain(|e| e.drained || e.weight != e.file_weight);
            }
            return show(&connection, &listed, |e| render::endpoints(e));
        }
        EndpointCommand::Register {
            instance,
            weight,
            port,
            ttl,
        } => {
            let registration = Registration {
                address: instance.address,
                weight,
                port,
                ttl_seconds: ttl.map(|ttl| ttl.as_secs()),
                expires: None,
            };
            let path = format!("/v1/pools/{}/instances", instance.pool);
            let client = client(&instance.connection)?;
            let _: Registration = client.post(&path, Some(&registration)).await?;
            return show_pool(&client, &instance).await;
        }
        EndpointCommand::Deregister(instance) => {
            let path = format!("/v1/pools/{}/instances/{}", instance.pool, instance.address);
            let client = client(&instance.connection)?;
            let () = client.delete(&path).await?;
            return show_pool(&client, &instance).await;
        }
        EndpointCommand::Heartbeat(instance) => {
            let path = format!(
                "/v1/pools/{}/instances/{}/heartbeat",
                instance.pool, instance.address
            );
            let client = client(&instance.connection)?;
            let _: Registration = client.post(&path, None::<&()>).await?;
            return Ok(());
        }
        EndpointCommand::Load {
            pool,
            address,
            value,
            connection,
        } => {
            // A number goes as one, so that the daemon judges the figure
            // and not its spelling; anything else as agent words.
            let load = match value.trim().parse::<f64>() {
                Ok(figure) => LoadValue::Figure(figure),
                Err(_) => LoadValue::Words(value),
            };
            let path = format!("/v1/pools/{pool}/endpoints/{address}/load");
            let weighed: EndpointInfo = client(&connection)?
                .post(&path, Some(&LoadReport { load }))
                .await?;
            return show(&connection, &[weighed], |e| render::endpoints(e));
        }
        EndpointCommand::Drain(EndpointArgs {
            address,
            pool,
            connection,
        }) => (
            "/v1/endpoints/drain".to_owned(),
            serde_json::to_value(EndpointRef { address, pool })?,
            connection,
        ),
        EndpointCommand::Undrain(EndpointArgs {
            address,
            pool,
            connection,
        }) => (
            "/v1/endpoints/undrain".to_owned(),
            serde_json::to_value(EndpointRef { address, pool })?,
            connection,
        ),
        EndpointCommand::Weight {
            address,
            weight: None,
            pool,
            connection,
            ..
        } => (
            "/v1/endpoints/weight/clear".to_owned(),
            serde_json::to_value(EndpointRef { address, pool })?,
            connection,
        ),
        EndpointCommand::Weight {
            address,
            weight: Some(weight),
            pool,
            connection,
            ..
        } => (
            "/v1/endpoints/weight".to_owned(),
            serde_json::to_value(WeightChange {
                endpoint: EndpointRef { address, pool },
                weight,
            })?,
            connection,
        ),
    };
    let client = client(&connection)?;
    let () = client.post(&path, Some(&body)).await?;
    // What the change left: the endpoints, as `endpoint list` shows them.
    let endpoints: Vec<EndpointInfo> = client.get("/v1/endpoints").await?;
    show(&connection, &endpoints, |e| render::endpoints(e))
}

/// The endpoints of the instance's pool after a change, as `endpoint
/// list --pool` shows them.
async fn show_pool(client: &Client, instance: &InstanceArgs) -> anyhow::Result<()> {
    let path = format!("/v1/endpoints?pool={}", instance.pool);
    let endpoints: Vec<EndpointInfo> = client.get(&path).await?;
    show(&instance.connection, &endpoints, |e| render::endpoints(e))
}

async fn stats(args: StatsArgs) -> anyhow::Result<()> {
    let client = client(&args.connection)?;
    let mut before: Stats = client.get("/v1/stats").await?;
    let mut shown = 0u32;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now: Stats = client.get("/v1/stats").await?;
        if args.connection.json {
            show(&args.connection, &now, |_| String::new())?;
        } else {
            let text = render::stats(&before, &now);
            // A terminal's screen is redrawn; a pipe gets one report after
            // another.
            let clear = if args.watch && std::io::stdout().is_terminal() {
                "\x1b[H\x1b[2J"
            } else {
                ""
            };
            std::io::stdout().write_all(format!("{clear}{text}").as_bytes())?;
        }
        shown += 1;
        if !args.watch || args.count.is_some_and(|count| shown >= count) {
            return Ok(());
        }
        before = now;
    }
}
