//! The command line: `dnslb run` serves; the other commands talk to a
//! running daemon through its control API (`control`, rendered by
//! `render`) or check files offline (`check`).

mod check;
mod control;
pub(crate) mod render;

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand};
use hickory_proto::rr::Name;

pub use check::check;
pub use control::control;

use crate::{api::DEFAULT_SOCKET, dataplane::AttachMode};

#[derive(Debug, Parser)]
#[command(
    name = "dnslb",
    version,
    about = "A DNS load balancer that answers its busiest names in XDP"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve zones: hot A and AAAA records from the kernel, everything else
    /// from here.
    #[command(after_help = "Examples:
  dnslb run --iface eth0 --zone example.com=/etc/dnslb/example.com.zone
  dnslb run --iface eth0 --config /etc/dnslb/dnslb.toml --metrics 127.0.0.1:9153
  dnslb run --no-xdp --listen 127.0.0.1:5353 --zone example.com=example.com.zone")]
    Run(Box<RunArgs>),
    /// What the running daemon serves: version, interface, XDP mode,
    /// uptime, zones, services and how full the kernel maps are.
    #[command(after_help = "Examples:\n  dnslb status\n  dnslb status --json")]
    Status(Connection),
    /// Zones: list, show, load, reload, remove.
    #[command(subcommand)]
    Zone(ZoneCommand),
    /// Signed zones: their keys, signatures, and DS records for the parent.
    #[command(subcommand)]
    Dnssec(DnssecCommand),
    /// Services of the policy file: list, or show one's policy tree, the
    /// answer each client network gets and its endpoints.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Endpoints: list; drain, undrain or reweigh one (kept across reloads).
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Anycast: withdraw this node's addresses (before maintenance), or
    /// announce them again.
    #[command(subcommand)]
    Anycast(AnycastCommand),
    /// Every health check on every endpoint: verdict, last probe latency,
    /// last transition, failures in a row.
    #[command(
        after_help = "Examples:\n  dnslb health\n  dnslb health --json | jq '.[] | select(.up | not)'"
    )]
    Health(Connection),
    /// Queries per second by path, pass reasons, policy branches and the
    /// names most asked of the daemon in the last minute.
    #[command(after_help = "Examples:\n  dnslb stats\n  dnslb stats --watch")]
    Stats(StatsArgs),
    /// Read the policy file and every zone file again (as SIGHUP), and say
    /// what happened.
    #[command(after_help = "Examples:\n  dnslb reload")]
    Reload(Connection),
    /// Check a policy file and zone files without a daemon; every problem
    /// as `file:line: problem`, exit status 1 if there is any.
    #[command(after_help = "Examples:
  dnslb check --config /etc/dnslb/dnslb.toml
  dnslb check --zone example.com=example.com.zone --zone example.org=example.org.zone")]
    Check(CheckArgs),
    /// Detach the XDP program pinned by `dnslb run --pin DIR` and remove the
    /// pinned maps (after the daemon has stopped).
    #[command(after_help = "Examples:\n  dnslb detach --pin /sys/fs/bpf/dnslb")]
    Detach {
        #[arg(long, value_name = "DIR")]
        pin: PathBuf,
    },
    /// Print a shell completion script.
    #[command(after_help = "Examples:
  dnslb completions bash > /etc/bash_completion.d/dnslb
  dnslb completions zsh > ~/.zfunc/_dnslb")]
    Completions { shell: clap_complete::Shell },
}

/// How to reach a running daemon, and how to print what it says.
#[derive(Clone, Debug, Args)]
pub struct Connection {
    /// The daemon's control socket.
    #[arg(long, default_value = DEFAULT_SOCKET, value_name = "PATH")]
    pub socket: PathBuf,
    /// Reach the daemon over TCP instead (its --control-listen), as
    /// HOST:PORT; needs --token-file.
    #[arg(long, value_name = "HOST:PORT", requires = "token_file")]
    pub connect: Option<String>,
    /// The bearer token for --connect, on the file's first line.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Print the daemon's JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

impl Command {
    /// How a control command reaches the daemon; `None` for the others.
    pub fn connection(&self) -> Option<&Connection> {
        Some(match self {
            Command::Status(c) | Command::Health(c) | Command::Reload(c) => c,
            Command::Stats(args) => &args.connection,
            Command::Zone(
                ZoneCommand::List(c)
                | ZoneCommand::Show { connection: c, .. }
                | ZoneCommand::Load { connection: c, .. }
                | ZoneCommand::Reload { connection: c, .. }
                | ZoneCommand::Remove { connection: c, .. }
                | ZoneCommand::Release { connection: c, .. },
            ) => c,
            Command::Service(
                ServiceCommand::List(c) | ServiceCommand::Show { connection: c, .. },
            ) => c,
            Command::Dnssec(
                DnssecCommand::Status { connection: c, .. }
                | DnssecCommand::Ds { connection: c, .. }
                | DnssecCommand::Roll { connection: c, .. },
            ) => c,
            Command::Endpoint(
                EndpointCommand::List { connection: c, .. }
                | EndpointCommand::Load { connection: c, .. }
                | EndpointCommand::Weight { connection: c, .. },
            ) => c,
            Command::Endpoint(EndpointCommand::Drain(args) | EndpointCommand::Undrain(args)) => {
                &args.connection
            }
            Command::Endpoint(
                EndpointCommand::Register { instance, .. }
                | EndpointCommand::Deregister(instance)
                | EndpointCommand::Heartbeat(instance),
            ) => &instance.connection,
            Command::Anycast(AnycastCommand::Withdraw(c) | AnycastCommand::Announce(c)) => c,
            Command::Run(_)
            | Command::Check(_)
            | Command::Detach { .. }
            | Command::Completions { .. } => return None,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum DnssecCommand {
    /// Each signed zone (or ZONE): its keys, how many signatures it has and
    /// when the first expires.
    #[command(after_help = "Examples:\n  dnslb dnssec status\n  dnslb dnssec status example.com")]
    Status {
        zone: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// The DS records of ZONE's key-signing keys, for its parent (the
    /// registrar), as `dnssec-dsfromkey` prints them.
    #[command(after_help = "Examples:\n  dnslb dnssec ds example.com")]
    Ds {
        zone: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Starts a roll of ZONE's zone-signing key (pre-publication: the new
    /// key is published, then signs) or key-signing key (the new key signs
    /// the DNSKEY RRset at once and its CDS and CDNSKEY are published for
    /// the parent; the old one retires after `ds_wait`).
    #[command(
        after_help = "Examples:\n  dnslb dnssec roll example.com zsk\n  dnslb dnssec roll example.com ksk"
    )]
    Roll {
        zone: String,
        #[arg(value_enum)]
        key: crate::signer::Roll,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Debug, Subcommand)]
pub enum ZoneCommand {
    /// Every zone served, with its file, serial and size.
    #[command(after_help = "Examples:\n  dnslb zone list\n  dnslb zone list --json")]
    List(Connection),
    /// One zone.
    #[command(after_help = "Examples:\n  dnslb zone show example.com")]
    Show {
        origin: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Serve a zone from FILE, added or in place of the file it was served
    /// from; a file with errors changes nothing. The zone is then the
    /// control API's (kept across reloads and restarts) until `release`.
    #[command(after_help = "Examples:\n  dnslb zone load example.net /etc/dnslb/example.net.zone")]
    Load {
        origin: String,
        file: PathBuf,
        #[command(flatten)]
        connection: Connection,
    },
    /// Read a zone's file again (every zone's without ORIGIN); the zone
    /// stays where it was named (command line, policy file, control API).
    #[command(after_help = "Examples:\n  dnslb zone reload example.com\n  dnslb zone reload")]
    Reload {
        origin: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Stop serving a zone (refused while a service answers in it).
    #[command(after_help = "Examples:\n  dnslb zone remove example.net")]
    Remove {
        origin: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Hand a zone that `load` or `remove` changed back to the files: it is
    /// served as the command line or the policy file names it again (or no
    /// longer, if neither does).
    #[command(after_help = "Examples:\n  dnslb zone release example.com")]
    Release {
        origin: String,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Every service of the policy file.
    #[command(after_help = "Examples:\n  dnslb service list")]
    List(Connection),
    /// One service: its policy tree, what each client network gets now,
    /// and its endpoints with their health.
    #[command(after_help = "Examples:\n  dnslb service show www")]
    Show {
        label: String,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Every endpoint, with weight, health and whether it is drained.
    #[command(after_help = "Examples:
  dnslb endpoint list
  dnslb endpoint list --pool web
  dnslb endpoint list --overrides")]
    List {
        #[arg(long)]
        pool: Option<String>,
        /// Only the endpoints the operator drained or gave a weight of
        /// their own (kept across restarts until undone).
        #[arg(long)]
        overrides: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Take an endpoint out of the answers as if it were unhealthy; its
    /// checks go on. In every pool that has the address, or in --pool.
    #[command(after_help = "Examples:
  dnslb endpoint drain 198.51.100.7
  dnslb endpoint drain 198.51.100.7 --pool web")]
    Drain(EndpointArgs),
    /// Undo a drain.
    #[command(after_help = "Examples:\n  dnslb endpoint undrain 198.51.100.7")]
    Undrain(EndpointArgs),
    /// Register an instance in a registered pool (again, to change it). It
    /// is answered once its pool's check passes; with --ttl it must be
    /// renewed by `heartbeat` within that time or it is dropped.
    #[command(after_help = "Examples:
  dnslb endpoint register api 198.18.0.21
  dnslb endpoint register api 198.18.0.22 --weight 3 --port 8080 --ttl 30s")]
    Register {
        #[command(flatten)]
        instance: InstanceArgs,
        #[arg(long, default_value_t = 1)]
        weight: u8,
        /// The port its checks probe, when not the check's own.
        #[arg(long)]
        port: Option<u16>,
        /// How long it stays registered without a heartbeat (500ms, 30s, 5m).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<std::time::Duration>,
    },
    /// Remove an instance from a registered pool.
    #[command(after_help = "Examples:\n  dnslb endpoint deregister api 198.18.0.21")]
    Deregister(InstanceArgs),
    /// Renew an instance's TTL.
    #[command(after_help = "Examples:\n  dnslb endpoint heartbeat api 198.18.0.22")]
    Heartbeat(InstanceArgs),
    /// Report an endpoint's load, for a pool with `load = { source =
    /// "push" }`: a utilisation (0 to 1), a count the pool's `capacity`
    /// divides, or HAProxy agent words (75%, drain, maint, ready). Shows
    /// the endpoint as it is weighed now.
    #[command(after_help = "Examples:
  dnslb endpoint load web 198.51.100.7 0.42
  dnslb endpoint load web 198.51.100.7 drain")]
    Load {
        pool: String,
        address: std::net::IpAddr,
        value: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Give an endpoint another weight (0 to 255) than the policy file's,
    /// or with --clear the file's again.
    #[command(after_help = "Examples:
  dnslb endpoint weight 198.51.100.7 0 --pool web
  dnslb endpoint weight 198.51.100.7 --clear")]
    Weight {
        address: std::net::IpAddr,
        #[arg(required_unless_present = "clear")]
        weight: Option<u8>,
        /// Undo the weight override: the policy file's weight applies.
        #[arg(long, conflicts_with = "weight")]
        clear: bool,
        #[arg(long)]
        pool: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Debug, Subcommand)]
pub enum AnycastCommand {
    /// Stop announcing this node's anycast addresses (it goes on serving
    /// what still reaches it), until `announce`.
    #[command(after_help = "Examples:\n  dnslb anycast withdraw")]
    Withdraw(Connection),
    /// Announce them again (while serving and healthy).
    #[command(after_help = "Examples:\n  dnslb anycast announce")]
    Announce(Connection),
}

#[derive(Debug, Args)]
pub struct InstanceArgs {
    /// A pool of kind "registered".
    pub pool: String,
    pub address: std::net::IpAddr,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
pub struct EndpointArgs {
    pub address: std::net::IpAddr,
    #[arg(long)]
    pub pool: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Refresh in place every second.
    #[arg(long)]
    pub watch: bool,
    /// With --watch, stop after this many refreshes.
    #[arg(long, value_name = "N", requires = "watch")]
    pub count: Option<u32>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("files").required(true).multiple(true).args(["config", "zones"]))]
pub struct CheckArgs {
    /// The policy file (with the zones it names).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A zone, as ORIGIN=FILE. Repeat for more zones.
    #[arg(long = "zone", value_name = "ORIGIN=FILE", value_parser = parse_zone_arg)]
    pub zones: Vec<ZoneArg>,
}

#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Network interface to attach the XDP program to.
    #[arg(long, required_unless_present = "no_xdp")]
    pub iface: Option<String>,
    /// How the XDP program runs: in the driver, or generic (slower, any NIC).
    #[arg(long, value_enum, default_value = "native")]
    pub xdp_mode: AttachMode,
    /// Serve from userspace alone, without the XDP program.
    #[arg(long)]
    pub no_xdp: bool,
    /// Address and port for DNS over UDP and TCP; the kernel answers on the
    /// same port. The default takes IPv4 and IPv6 on one socket.
    #[arg(long, default_value = "[::]:53")]
    pub listen: SocketAddr,
    /// A zone to serve, as ORIGIN=FILE (an RFC 1035 master file). Repeat for more zones.
    #[arg(long = "zone", value_name = "ORIGIN=FILE", value_parser = parse_zone_arg, required_unless_present = "config")]
    pub zones: Vec<ZoneArg>,
    /// The policy file (TOML): pools, health checks, services and their
    /// routing policies, and zones. Re-read with the zones on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Sign this --zone online (DNSSEC, ECDSA P-256, one combined key, as
    /// `dnssec = "online"` does for a policy file's zone). Repeat for more.
    #[arg(long = "sign", value_name = "ORIGIN", value_parser = parse_origin)]
    pub sign: Vec<Name>,
    /// Where the keys of signed zones are kept (BIND's key files); made
    /// mode 0700 if missing. Default: `keys` in --state-dir.
    #[arg(long, value_name = "DIR")]
    pub key_dir: Option<PathBuf>,
    /// Address and port for the Prometheus endpoint (/metrics).
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// EDNS UDP payload size advertised and honoured (512 to 4096).
    #[arg(long, default_value_t = 1232, value_parser = clap::value_parser!(u16).range(512..=4096))]
    pub edns_payload: u16,
    /// How many names the kernel map holds.
    #[arg(long, default_value_t = 65_536)]
    pub hot_capacity: u32,
    /// UDP sockets to answer on (SO_REUSEPORT); default: one per core.
    #[arg(long)]
    pub udp_sockets: Option<usize>,
    /// DNS cookie secrets shared by a fleet: the current one, and
    /// optionally the previous, as 32 hex digits a line.
    /// Re-read on SIGHUP. Without it, a random secret is made at start.
    #[arg(long, value_name = "FILE")]
    pub cookie_secret_file: Option<PathBuf>,
    /// Seconds between rotations of a generated cookie secret; 0 never
    /// rotates.
    #[arg(long, default_value_t = 86_400, value_name = "SECONDS")]
    pub cookie_rotation: u64,
    /// The control API's unix socket (mode 0600; its directory is made).
    #[arg(long, default_value = DEFAULT_SOCKET, value_name = "PATH")]
    pub control_socket: PathBuf,
    /// Where state that outlives a restart is kept: the registered pools'
    /// instances, and the hooks' dead-letter files.
    #[arg(long, default_value = "/var/lib/dnslb", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Also serve the control API over TCP on this address; every request
    /// must then carry the token of --control-token-file.
    #[arg(long, value_name = "ADDR", requires = "control_token_file")]
    pub control_listen: Option<SocketAddr>,
    /// The bearer token for --control-listen and --console, on the file's
    /// first line.
    #[arg(long, value_name = "FILE")]
    pub control_token_file: Option<PathBuf>,
    /// Serve the web console (and the control API it uses) on this
    /// address; it asks for the token of --control-token-file. The console
    /// is also served on --control-listen.
    #[arg(long, value_name = "ADDR", requires = "control_token_file")]
    pub console: Option<SocketAddr>,
    /// Pin the XDP program's link and maps under DIR (a bpffs directory,
    /// e.g. /sys/fs/bpf/dnslb): stopped, dnslb leaves the kernel answering
    /// what it last wrote, and the next `dnslb run --pin DIR` takes over
    /// without a gap (a build with another map layout swaps in its own
    /// maps). `dnslb detach --pin DIR` removes it all.
    #[arg(long, value_name = "DIR")]
    pub pin: Option<PathBuf>,
    /// For tests: act as a build whose map layout version is N.
    #[arg(long, hide = true, default_value_t = dns_common::MAP_LAYOUT)]
    pub map_layout: u32,
    /// Log the XDP program's decisions (pass reason; name length, selection
    /// and records of each answer) into the daemon's log. Off, the program
    /// carries no logging code (the verifier removes it); on, every packet
    /// costs a log record: for debugging, not for production load.
    #[arg(long)]
    pub xdp_log: bool,
    /// Log lines as text, or as one JSON object a line (for log shippers);
    /// `RUST_LOG` filters them (default `info`).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Once the program is attached, its maps open and the sockets bound,
    /// run as this user, with no capabilities and no_new_privs (command
    /// checks, hooks and function instances then run as this user too).
    /// Zone, policy and cookie files must be readable by it, and
    /// --state-dir writable.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    #[command(flatten)]
    pub rate_limit: RateLimitArgs,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// Running as one node of a fleet that shares its configuration and
/// health through etcd.
#[derive(Args, Clone, Debug)]
pub struct FleetArgs {
    /// Join the fleet whose store is this etcd cluster
    /// (etcd://HOST:PORT,HOST:PORT,...): the policy file, drains, weights,
    /// registrations and zone assignments are the fleet's, and every
    /// change through this node's control API goes there. The policy file
    /// (--config) keeps the last state, served when etcd cannot be reached.
    #[arg(long, value_name = "URL", requires = "config")]
    pub cluster: Option<String>,
    /// The key prefix the fleet's keys live under.
    #[arg(long, value_name = "PREFIX", default_value = "/dnslb/")]
    pub cluster_prefix: String,
    /// This node's name in the fleet (its health verdicts are kept under
    /// it); the host name when not given.
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Reach etcd over TLS, trusting the CA certificates (PEM) in FILE.
    #[arg(long, value_name = "FILE", requires = "cluster")]
    pub cluster_ca: Option<PathBuf>,
    /// With --cluster-ca: this node's client certificate (PEM), for etcd's
    /// --client-cert-auth.
    #[arg(long, value_name = "FILE", requires_all = ["cluster_ca", "cluster_key"])]
    pub cluster_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cluster_cert")]
    pub cluster_key: Option<PathBuf>,
    /// Authenticate to etcd as this user (etcd's `auth enable`).
    #[arg(long, value_name = "NAME", requires_all = ["cluster", "cluster_password_file"])]
    pub cluster_user: Option<String>,
    /// The password of --cluster-user, on the file's first line.
    #[arg(long, value_name = "FILE", requires = "cluster_user")]
    pub cluster_password_file: Option<PathBuf>,
}

/// Response rate limiting (RRL), as Knot DNS and NSD do it: every client
/// network has a token bucket, shared by the kernel's and the daemon's UDP
/// answers. TCP answers are not limited (TCP sources cannot be spoofed).
#[derive(Clone, Debug, Args)]
pub struct RateLimitArgs {
    /// UDP answers per second each client network gets; 0 turns rate
    /// limiting off.
    #[arg(long = "rate-limit", default_value_t = 200, value_name = "PER_SECOND")]
    pub rate: u32,
    /// Answers a network may get at once after a quiet spell, above the
    /// rate [default: one second's worth].
    #[arg(long = "rate-limit-burst", value_name = "ANSWERS", value_parser = clap::value_parser!(u32).range(1..))]
    pub burst: Option<u32>,
    /// Every Nth limited answer is sent truncated (TC=1), so that a real
    /// resolver whose address a flood spoofs asks again over TCP; 0 drops
    /// every limited answer.
    #[arg(long = "rate-limit-slip", default_value_t = 2, value_name = "N")]
    pub slip: u32,
    /// The prefix length of an IPv4 client network.
    #[arg(long = "rate-limit-ipv4-prefix", default_value_t = 24, value_parser = clap::value_parser!(u8).range(1..=32))]
    pub v4_prefix: u8,
    /// The prefix length of an IPv6 client network.
    #[arg(long = "rate-limit-ipv6-prefix", default_value_t = 56, value_parser = clap::value_parser!(u8).range(1..=64))]
    pub v6_prefix: u8,
    /// A client network never limited (CIDR: your own resolvers, a
    /// monitoring host). Repeat for more. Clients that present a valid
    /// server cookie are never limited either.
    #[arg(long = "rate-limit-exempt", value_name = "CIDR")]
    pub exempt: Vec<ipnetwork::IpNetwork>,
    /// Client networks tracked at once; the least recently seen make room.
    #[arg(long = "rate-limit-table", default_value_t = 65_536, value_name = "NETWORKS", value_parser = clap::value_parser!(u32).range(1..))]
    pub table: u32,
}

impl RateLimitArgs {
    /// The limit as the kernel and the daemon apply it.
    pub fn limit(&self) -> dns_common::guard::RateLimit {
        dns_common::guard::RateLimit {
            rate: self.rate,
            burst: self.burst.unwrap_or(self.rate.max(1)),
            slip: self.slip,
            v4_prefix: self.v4_prefix,
            v6_prefix: self.v6_prefix,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct ZoneArg {
    pub origin: Name,
    pub file: PathBuf,
    /// Who may transfer it and who is told of changes (the policy file's
    /// `allow_transfer` and `notify`).
    pub transfer: crate::server::ZoneTransfer,
    /// How dnslb signs it, when it does (`dnssec` in the policy file,
    /// `--sign` on the command line).
    pub dnssec: Option<crate::signer::SigningPolicy>,
}

fn parse_origin(value: &str) -> Result<Name, String> {
    let mut origin =
        Name::from_ascii(value).map_err(|error| format!("bad zone origin `{value}`: {error}"))?;
    origin.set_fqdn(true);
    Ok(origin)
}

fn parse_zone_arg(value: &str) -> Result<ZoneArg, String> {
    let (origin, file) = value
        .split_once('=')
        .ok_or_else(|| format!("expected ORIGIN=FILE, got `{value}`"))?;
    let mut origin =
        Name::from_ascii(origin).map_err(|error| format!("bad zone origin `{origin}`: {error}"))?;
    origin.set_fqdn(true);
    if file.is_empty() {
        return Err(format!("no file given for zone {origin}"));
    }
    Ok(ZoneArg {
        origin,
        file: PathBuf::from(file),
        transfer: Default::default(),
        dnssec: None,
    })
}

/// A TTL of whole seconds, at least one.
fn parse_ttl(text: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(text)
        .filter(|ttl| ttl.as_secs() >= 1)
        .ok_or_else(|| format!("`{text}` is not a duration of at least 1s, like 30s or 5m"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_arguments() {
        let zone = parse_zone_arg("example.com=zones/example.com.zone").unwrap();
        assert_eq!(zone.origin.to_string(), "example.com.");
        assert_eq!(zone.file, PathBuf::from("zones/example.com.zone"));
        assert!(
            parse_zone_arg("example.com")
                .unwrap_err()
                .contains("ORIGIN=FILE")
        );
        assert!(parse_zone_arg("example.com=").is_err());
    }

    #[test]
    fn iface_is_required_unless_no_xdp() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from([&["dnslb", "run", "--zone", "a=b"], args].concat())
        };
        assert!(parse(&[]).is_err());
        assert!(parse(&["--no-xdp"]).is_ok());
        assert!(parse(&["--iface", "eth0"]).is_ok());
    }
}
