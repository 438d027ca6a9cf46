//! Test hosts in network namespaces: a client and a server joined by a veth
//! pair, 198.18.0.1 and 198.18.0.2. Everything is removed on drop, which
//! also detaches any XDP program from the veth devices.

use std::{
    fs::{self, File},
    path::Path,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
    thread,
};

use anyhow::{Context, bail};
use dnslb::dataplane::{AttachMode, PassThrough, attach_pass_through};
use nix::sched::{CloneFlags, setns};

pub const CLIENT_ADDR: &str = "198.18.0.1";
pub const SERVER_ADDR: &str = "198.18.0.2";
pub const CLIENT_ADDR6: &str = "2001:db8::1";
pub const SERVER_ADDR6: &str = "2001:db8::2";
const PREFIX: &str = "dnslbt";

/// A named network namespace, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    fn create(name: String) -> anyhow::Result<Netns> {
        ip(&["netns", "add", &name])?;
        let netns = Netns { name };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `program` to be run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Runs `work` on a thread that has entered the namespace, for sockets
    /// and XDP attachments made from this process.
    pub fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    self.enter()?;
                    Ok(work())
                })
                .join()
                .map_err(|_| anyhow::anyhow!("work in namespace {} panicked", self.name))?
        })
    }

    /// The MAC of `iface` in the namespace.
    pub fn mac(&self, iface: &str) -> anyhow::Result<[u8; 6]> {
        let link = self.ip(&["-br", "link", "show", "dev", iface])?;
        let text = link
            .split_whitespace()
            .nth(2)
            .with_context(|| format!("no MAC in `ip -br link show dev {iface}`: {link}"))?;
        let mut mac = [0u8; 6];
        let mut octets = text.split(':');
        for byte in &mut mac {
            *byte = octets
                .next()
                .and_then(|octet| u8::from_str_radix(octet, 16).ok())
                .with_context(|| format!("{iface} has no MAC of six octets: {text}"))?;
        }
        Ok(mac)
    }

    /// Moves the calling thread into the namespace (for threads that live
    /// longer than one [`Netns::run`], such as a test's backend servers).
    pub fn enter(&self) -> anyhow::Result<()> {
        enter_netns(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "delete", &self.name]);
    }
}

/// Moves the calling thread into the namespace called `name`.
pub fn enter_netns(name: &str) -> anyhow::Result<()> {
    let path = Path::new("/run/netns").join(name);
    let handle = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    setns(handle, CloneFlags::CLONE_NEWNET).context("entering the namespace")
}

/// Two hosts and the wire between them.
pub struct Rig {
    pub client: Netns,
    pub server: Netns,
    pub client_if: String,
    pub server_if: String,
}

impl Rig {
    pub fn new() -> anyhow::Result<Rig> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let client = Netns::create(format!("{PREFIX}-{pid}-{n}-client"))?;
        let server = Netns::create(format!("{PREFIX}-{pid}-{n}-server"))?;
        let (client_if, server_if) = (format!("dl{n}x{pid}c"), format!("dl{n}x{pid}s"));
        client.ip(&[
            "link",
            "add",
            &client_if,
            "type",
            "veth",
            "peer",
            "name",
            &server_if,
            "netns",
            server.name(),
        ])?;
        client.ip(&[
            "addr",
            "add",
            &format!("{CLIENT_ADDR}/24"),
            "dev",
            &client_if,
        ])?;
        server.ip(&[
            "addr",
            "add",
            &format!("{SERVER_ADDR}/24"),
            "dev",
            &server_if,
        ])?;
        client.ip(&["link", "set", &client_if, "up"])?;
        server.ip(&["link", "set", &server_if, "up"])?;
        Ok(Rig {
            client,
            server,
            client_if,
            server_if,
        })
    }

    /// Gives both ends IPv6 addresses too ([`CLIENT_ADDR6`] and
    /// [`SERVER_ADDR6`]), usable at once (no duplicate address detection),
    /// each knowing the other's MAC.
    pub fn add_ipv6(&self) -> anyhow::Result<()> {
        let ends = [
            (&self.client, &self.client_if, CLIENT_ADDR6),
            (&self.server, &self.server_if, SERVER_ADDR6),
        ];
        for (host, iface, addr) in ends {
            host.ip(&["addr", "add", &format!("{addr}/64"), "dev", iface, "nodad"])?;
        }
        for (index, (host, iface, _)) in ends.iter().enumerate() {
            let (peer, peer_if, peer_addr) = ends[1 - index];
            let mac = peer
                .mac(peer_if)?
                .map(|octet| format!("{octet:02x}"))
                .join(":");
            host.ip(&[
                "neigh",
                "replace",
                peer_addr,
                "lladdr",
                &mac,
                "dev",
                iface,
                "nud",
                "permanent",
            ])?;
        }
        Ok(())
    }

    /// Attaches a pass-everything XDP program to the client's interface, so
    /// that the kernel delivers the frames the server sends with `XDP_TX`
    /// (veth drops them otherwise). Detached when the handle drops.
    pub fn attach_client_pass_through(&self) -> anyhow::Result<PassThrough> {
        let iface = self.client_if.clone();
        Ok(self
            .client
            .run(move || attach_pass_through(&iface, AttachMode::Native))??)
    }

    /// Detaches an XDP program that another tool attached to the server's
    /// interface through netlink and left behind (Knot DNS leaves its
    /// program).
    pub fn clear_server_xdp(&self) -> anyhow::Result<()> {
        self.server
            .ip(&["link", "set", "dev", &self.server_if, "xdp", "off"])?;
        Ok(())
    }

    /// Whether an XDP program is attached to the server's interface.
    pub fn server_has_xdp(&self) -> anyhow::Result<bool> {
        Ok(self
            .server
            .ip(&["link", "show", "dev", &self.server_if])?
            .contains("xdp"))
    }
}

/// A server and several clients on one Ethernet segment: every host's veth
/// ends on a bridge in a "switch" namespace. For tests where clients with
/// different addresses must get different answers. Addresses are /16s
/// inside 198.18.0.0/15; the server is [`SERVER_ADDR`].
pub struct SwitchedRig {
    pub server: Netns,
    pub server_if: String,
    pub switch: Netns,
    /// The switch's end of the server's veth: `XDP_TX` answers arrive here.
    switch_server_if: String,
    pub clients: Vec<Netns>,
}

impl SwitchedRig {
    pub fn new(client_addrs: &[&str]) -> anyhow::Result<SwitchedRig> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = |role: String| format!("{PREFIX}-{pid}-s{n}-{role}");
        let switch = Netns::create(name("switch".into()))?;
        switch.ip(&["link", "add", "br0", "type", "bridge"])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        let server = Netns::create(name("server".into()))?;
        let server_if = format!("ds{n}x{pid}");
        let switch_server_if = format!("ds{n}x{pid}p");
        // One queue a core on the server's link, as a NIC with RSS has
        // them, each fed by its own core: the switch sends on the queue of
        // the CPU it forwards on (XPS), and the server's veth receives on
        // that queue. One client's flood keeps to its core and its queue,
        // and leaves the others' alone; without XPS the queue would follow
        // each flow's hash, and a resolver's flow could share the flood's.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        plug(
            &switch,
            &switch_server_if,
            (&server, &server_if, SERVER_ADDR),
            cores,
        )?;
        for queue in 0..cores {
            let mask = format!("{:x}", 1u64 << queue);
            let file = format!("/sys/class/net/{switch_server_if}/queues/tx-{queue}/xps_cpus");
            // `ip netns exec` mounts the namespace's own /sys.
            let output = switch
                .command("sh")
                .args(["-c", &format!("echo {mask} > {file}")])
                .output()
                .context("setting XPS on the server's port")?;
            checked(&format!("XPS of {file}"), output)?;
        }
        let mut clients = Vec::new();
        for (i, addr) in client_addrs.iter().enumerate() {
            let client = Netns::create(name(format!("client{i}")))?;
            let client_if = format!("dc{n}x{pid}c{i}");
            plug(
                &switch,
                &format!("dc{n}x{pid}p{i}"),
                (&client, &client_if, addr),
                1,
            )?;
            clients.push(client);
        }
        Ok(SwitchedRig {
            server,
            server_if,
            switch,
            switch_server_if,
            clients,
        })
    }

    /// Pass-through XDP on the switch's end of the server's veth, so that
    /// answers sent with `XDP_TX` are delivered (and then bridged on).
    pub fn attach_switch_pass_through(&self) -> anyhow::Result<PassThrough> {
        let iface = self.switch_server_if.clone();
        Ok(self
            .switch
            .run(move || attach_pass_through(&iface, AttachMode::Native))??)
    }
}

/// Hosts of a fleet on one Ethernet segment: a hub (the switch's own
/// namespace, with an address on its bridge, where a test runs what every
/// node reaches: etcd, backends, clients) and nodes, each in its own
/// namespace on a veth to the bridge. Addresses are /16s in 198.18.0.0/15:
/// the hub is [`HUB_ADDR`], node `k` is `198.18.1.{k + 1}`.
pub struct FleetRig {
    pub hub: Netns,
    pub nodes: Vec<FleetNode>,
    /// The hub's end of each node's veth: its `XDP_TX` answers arrive
    /// there.
    ports: Vec<String>,
}

pub const HUB_ADDR: &str = "198.18.0.1";

pub struct FleetNode {
    pub netns: Netns,
    pub iface: String,
    pub addr: String,
}

impl FleetRig {
    pub fn new(nodes: usize) -> anyhow::Result<FleetRig> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = |role: String| format!("{PREFIX}-{pid}-f{n}-{role}");
        let hub = Netns::create(name("hub".into()))?;
        hub.ip(&["link", "add", "br0", "type", "bridge"])?;
        hub.ip(&["addr", "add", &format!("{HUB_ADDR}/16"), "dev", "br0"])?;
        hub.ip(&["link", "set", "br0", "up"])?;
        let mut fleet = FleetRig {
            hub,
            nodes: Vec::new(),
            ports: Vec::new(),
        };
        for k in 0..nodes {
            let netns = Netns::create(name(format!("node{k}")))?;
            let (iface, port) = (format!("df{n}x{pid}n{k}"), format!("df{n}x{pid}p{k}"));
            let addr = format!("198.18.1.{}", k + 1);
            plug(&fleet.hub, &port, (&netns, &iface, &addr), 1)?;
            fleet.ports.push(port);
            fleet.nodes.push(FleetNode { netns, iface, addr });
        }
        Ok(fleet)
    }

    /// Another address of the hub (for a backend), as `addr`/16.
    pub fn add_hub_address(&self, addr: &str) -> anyhow::Result<()> {
        self.hub
            .ip(&["addr", "add", &format!("{addr}/16"), "dev", "br0"])
            .map(drop)
    }

    /// Pass-through XDP on the hub's end of every node's veth, so that
    /// the nodes' `XDP_TX` answers are delivered.
    pub fn attach_pass_through(&self) -> anyhow::Result<Vec<PassThrough>> {
        self.ports
            .iter()
            .map(|port| {
                let port = port.clone();
                Ok(self
                    .hub
                    .run(move || attach_pass_through(&port, AttachMode::Native))??)
            })
            .collect()
    }
}

/// A veth from `host` (`host_if`, `addr`/16) to a port of the switch's
/// bridge, with `queues` receive and transmit queues at each end.
fn plug(
    switch: &Netns,
    port: &str,
    (host, host_if, addr): (&Netns, &str, &str),
    queues: usize,
) -> anyhow::Result<()> {
    let queues = queues.to_string();
    let count = ["numtxqueues", &queues, "numrxqueues", &queues];
    let mut add = vec!["link", "add", port];
    add.extend(count);
    add.extend(["type", "veth", "peer", "name", host_if]);
    add.extend(count);
    add.extend(["netns", host.name()]);
    switch.ip(&add)?;
    switch.ip(&["link", "set", port, "master", "br0"])?;
    switch.ip(&["link", "set", port, "up"])?;
    host.ip(&["addr", "add", &format!("{addr}/16"), "dev", host_if])?;
    host.ip(&["link", "set", host_if, "up"])?;
    Ok(())
}

/// Deletes namespaces left by test processes that died before cleaning up.
fn remove_stale() {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(&format!("{PREFIX}-"))
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = ip(&["netns", "delete", &name]);
        }
    }
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (install iproute2)")?;
    checked(&format!("ip {}", args.join(" ")), output)
}

/// The command's stdout, or an error with its stderr.
pub fn checked(what: &str, output: Output) -> anyhow::Result<String> {
    if !output.status.success() {
        bail!(
            "{what}: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
