//! The command line.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Args, Parser, Subcommand};
use hickory_proto::rr::Name;

use crate::dataplane::AttachMode;

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
    /// Serve zones: hot A records from the kernel, everything else from here.
    Run(RunArgs),
}

#[derive(Debug, Args)]
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
    /// optionally the previous (still accepted), as 32 hex digits a line.
    /// Re-read on SIGHUP. Without it, a random secret is made at start.
    #[arg(long, value_name = "FILE")]
    pub cookie_secret_file: Option<PathBuf>,
    /// Seconds between rotations of a generated cookie secret (the previous
    /// one is accepted until the next rotation); 0 never rotates.
    #[arg(long, default_value_t = 86_400, value_name = "SECONDS")]
    pub cookie_rotation: u64,
}

#[derive(Clone, Debug)]
pub struct ZoneArg {
    pub origin: Name,
    pub file: PathBuf,
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
    })
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
