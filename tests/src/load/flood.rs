//! dnslb's own load generator: DNS queries as whole frames through a
//! packet socket on the client's interface, counted back by an XDP reply
//! sink on the same interface.
//!
//! It needs nothing of the kernel but a packet socket and an XDP program
//! that reads and counts, so it runs wherever dnslb's own program does
//! (kxdpgun's AF_XDP program needs `bpf_xdp_adjust_meta`, which some
//! kernels refuse). The queries carry what a mix asks for: DO, a cookie,
//! Client Subnet, over IPv4 or IPv6.

use std::{
    net::{IpAddr, SocketAddr},
    ops::Range,
    path::{Path, PathBuf},
    str::FromStr,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hickory_proto::rr::RecordType;
use nix::{sched::CpuSet, unistd::Pid};

use super::{
    Client, Throughput,
    link::{Interface, LinkSender},
    sink::{Replies, ReplySink},
};
use crate::frame::{Opt, QueryFrame};

/// The source ports the generator sends from, in turn; the sink counts
/// the replies to these and lets everything else pass (none of them is in
/// the kernel's ephemeral range, so a tool running beside the flood keeps
/// its answers).
pub const SOURCE_PORTS: Range<u16> = 20_000..21_024;

/// Frames per system call.
const BATCH: usize = 64;

/// The EDNS a mix's queries carry; none at all (no OPT record) when
/// nothing is asked for, as load generators send by default.
#[derive(Clone, Debug, Default)]
pub struct Edns {
    pub dnssec_ok: bool,
    /// Option 10's data: a client cookie, and a server cookie after it.
    pub cookie: Option<Vec<u8>>,
    /// Option 8 for this network and source prefix length.
    pub client_subnet: Option<(IpAddr, u8)>,
}

/// The payload size the generator's OPT record advertises, as resolvers
/// do since DNS Flag Day 2020.
const EDNS_PAYLOAD: u16 = 1232;

impl Edns {
    /// The OPT record, if any.
    pub fn opt(&self) -> Option<Opt> {
        if !self.dnssec_ok && self.cookie.is_none() && self.client_subnet.is_none() {
            return None;
        }
        let mut opt = Opt::plain(EDNS_PAYLOAD);
        opt.dnssec_ok = self.dnssec_ok;
        if let Some(cookie) = &self.cookie {
            opt = opt.option(10, cookie);
        }
        if let Some((network, prefix)) = self.client_subnet {
            opt = opt.subnet(network, prefix);
        }
        Some(opt)
    }

    /// dnsperf's arguments for the same OPT record (`-D`, `-E code:hex`).
    pub fn dnsperf_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.dnssec_ok {
            args.push("-D".to_owned());
        }
        let Some(opt) = self.opt() else {
            return args;
        };
        // The options as the OPT record carries them: code, length, data.
        let mut rest = opt.options.as_slice();
        while let [c0, c1, l0, l1, tail @ ..] = rest {
            let length = usize::from(u16::from_be_bytes([*l0, *l1])).min(tail.len());
            let (data, next) = tail.split_at(length);
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            args.push("-E".to_owned());
            args.push(format!("{}:{hex}", u16::from_be_bytes([*c0, *c1])));
            rest = next;
        }
        args
    }
}

/// A flood: `queries` in turn, from the client to `server`, at up to
/// `qps` for `seconds` (so at most `qps × seconds` queries, paced to be
/// offered within 95% of the time).
#[derive(Clone, Debug)]
pub struct Flood {
    /// One query a line, `name type` (dnsperf's format).
    pub queries: PathBuf,
    pub edns: Edns,
    pub server: SocketAddr,
    /// The server's MAC: the frames bypass the client's neighbour table.
    pub server_mac: [u8; 6],
    pub seconds: u32,
    pub qps: u32,
    /// The source ports it sends from, in turn (and the sink counts the
    /// replies to): [`SOURCE_PORTS`] spreads the queries over a server's
    /// sockets and receive queues as many clients would; a single port is
    /// one flow, which a NIC's RSS keeps to one queue and core.
    pub ports: Range<u16>,
}

/// What a flood sent and got back.
#[derive(Clone, Copy, Debug)]
pub struct Flooded {
    pub throughput: Throughput,
    /// Frames the client's link refused (counted in no other figure).
    pub refused: u64,
    pub replies: Replies,
}

/// How long the sink is watched after the last query for replies still
/// on their way: until its count holds still for `SETTLE_STEP`, at most
/// `SETTLE_LIMIT`.
const SETTLE_STEP: Duration = Duration::from_millis(50);
const SETTLE_LIMIT: Duration = Duration::from_secs(2);

impl Flood {
    /// Runs the flood from `client`, whose interface must have no XDP
    /// program of its own (the sink takes its place while it runs).
    pub fn run(&self, client: Client<'_>) -> anyhow::Result<Flooded> {
        let questions = read_questions(&self.queries)?;
        let sink = ReplySink::attach(
            client.netns,
            client.iface,
            self.server.port(),
            self.ports.clone(),
        )?;
        let (sent, refused, elapsed) = client.netns.run(|| -> anyhow::Result<_> {
            if let Some(cpu) = client.cpu {
                let mut set = CpuSet::new();
                set.set(cpu)?;
                nix::sched::sched_setaffinity(Pid::from_raw(0), &set)?;
            }
            let interface = Interface::find(client.iface)?;
            let templates = self.templates(&questions, &interface)?;
            let sender = LinkSender::bind(&interface)?;
            self.send(&sender, &templates)
        })??;
        let replies = settle(&sink)?;
        Ok(Flooded {
            throughput: Throughput {
                sent,
                replies: replies.total,
                replies_per_second: replies.total as f64 / elapsed.as_secs_f64().max(1e-3),
            },
            refused,
            replies,
        })
    }

    fn templates(
        &self,
        questions: &[(String, u16)],
        interface: &Interface,
    ) -> anyhow::Result<Vec<Template>> {
        let source = interface.source_for(self.server.ip())?;
        questions
            .iter()
            .map(|(name, qtype)| {
                let mut query = QueryFrame::a(name)
                    .with_type(*qtype)
                    .from_client(source)
                    .to_server(self.server.ip())
                    .with_macs(self.server_mac, interface.mac());
                query.opt = self.edns.opt();
                query.port = self.server.port();
                // Port and ID zero: each frame adds its own to the checksum.
                query.source_port = 0;
                query.id = 0;
                Ok(Template::new(query.build(), source))
            })
            .collect()
    }

    /// Sends at the paced rate until the time or the count runs out:
    /// (frames the link took, frames it refused, how long it took).
    fn send(
        &self,
        sender: &LinkSender,
        templates: &[Template],
    ) -> anyhow::Result<(u64, u64, Duration)> {
        let total = u64::from(self.qps) * u64::from(self.seconds);
        let started = Instant::now();
        let deadline = started + Duration::from_secs(u64::from(self.seconds));
        // The count is paced to be offered by 95% of the time, so that a
        // late wake-up near the end does not leave the last frames to the
        // deadline (a rate the link cannot take runs to the deadline).
        let pace = f64::from(self.qps) / PACED_SHARE;
        let (mut offered, mut sent, mut refused) = (0u64, 0u64, 0u64);
        let mut batch: Vec<Vec<u8>> = vec![Vec::new(); BATCH];
        loop {
            let now = Instant::now();
            if now >= deadline || offered >= total {
                break;
            }
            // Due by now at the offered rate (the first batch at once).
            let due = ((now - started).as_secs_f64() * pace) as u64 + 1;
            let wanted = due.min(total).saturating_sub(offered).min(BATCH as u64) as usize;
            if wanted == 0 {
                thread::sleep(Duration::from_micros(100));
                continue;
            }
            for frame in &mut batch[..wanted] {
                let template = &templates[(offered % templates.len() as u64) as usize];
                template.write(frame, offered, &self.ports);
                offered += 1;
            }
            let frames: Vec<&[u8]> = batch[..wanted].iter().map(Vec::as_slice).collect();
            let result = sender.send(&frames)?;
            sent += result.sent as u64;
            refused += result.refused as u64;
        }
        Ok((sent, refused, started.elapsed()))
    }
}

/// The share of a flood's time over which its count is paced.
const PACED_SHARE: f64 = 0.95;

/// The questions of a query file, `name type` a line.
fn read_questions(path: &Path) -> anyhow::Result<Vec<(String, u16)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the query file {}", path.display()))?;
    let mut questions = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let at = || format!("{}:{}", path.display(), index + 1);
        let mut words = line.split_whitespace();
        let (Some(name), Some(qtype), None) = (words.next(), words.next(), words.next()) else {
            bail!("{}: want `name type`, not {line:?}", at());
        };
        let qtype = RecordType::from_str(qtype)
            .map_err(|_| anyhow::anyhow!("{}: unknown record type {qtype}", at()))?;
        questions.push((name.to_owned(), u16::from(qtype)));
    }
    if questions.is_empty() {
        bail!("{}: no queries", path.display());
    }
    Ok(questions)
}

/// Watches the sink until its count holds still: replies still crossing
/// the veth when the last query left are counted too.
fn settle(sink: &ReplySink) -> anyhow::Result<Replies> {
    let until = Instant::now() + SETTLE_LIMIT;
    let mut last = sink.replies()?;
    loop {
        thread::sleep(SETTLE_STEP);
        let now = sink.replies()?;
        if now == last || Instant::now() > until {
            return Ok(now);
        }
        last = now;
    }
}

/// A query frame with source port and DNS ID zero, which each frame sent
/// fills in (and the UDP checksum follows).
struct Template {
    frame: Vec<u8>,
    /// Where the UDP header starts.
    udp: usize,
}

impl Template {
    fn new(frame: Vec<u8>, source: IpAddr) -> Template {
        let ip_header = if source.is_ipv4() { 20 } else { 40 };
        Template {
            frame,
            udp: 14 + ip_header,
        }
    }

    /// Frame number `n`: source port and ID drawn from `n`, so that
    /// consecutive frames come from the next of `ports` with different IDs.
    fn write(&self, frame: &mut Vec<u8>, n: u64, ports: &Range<u16>) {
        let count = u64::from(ports.end.saturating_sub(ports.start)).max(1);
        let port = ports.start + (n % count) as u16;
        let id = (n / count) as u16;
        frame.clear();
        frame.extend_from_slice(&self.frame);
        let udp = self.udp;
        frame[udp..udp + 2].copy_from_slice(&port.to_be_bytes());
        frame[udp + 8..udp + 10].copy_from_slice(&id.to_be_bytes());
        // RFC 1624: both fields were zero, so the sum only gains them.
        let old = u16::from_be_bytes([frame[udp + 6], frame[udp + 7]]);
        let mut sum = u32::from(!old) + u32::from(port) + u32::from(id);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let check = match !(sum as u16) {
            0 => 0xffff,
            check => check,
        };
        frame[udp + 6..udp + 8].copy_from_slice(&check.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::frame::{CLIENT_IP, CLIENT_IP6, SERVER_IP, SERVER_IP6, udp_checksum, udp6_checksum};

    fn template(source: IpAddr, opt: Option<Opt>) -> Template {
        let mut query = QueryFrame::a("www.example.com").from_client(source);
        query.opt = opt;
        query.source_port = 0;
        query.id = 0;
        Template::new(query.build(), source)
    }

    #[test]
    fn every_frame_has_its_port_id_and_a_valid_checksum() {
        let v4 = template(IpAddr::V4(CLIENT_IP), None);
        let v6 = template(IpAddr::V6(CLIENT_IP6), Edns::default().opt());
        let mut frame = Vec::new();
        for n in [0, 1, 1023, 1024, 5_000_000, u64::from(u32::MAX)] {
            v4.write(&mut frame, n, &SOURCE_PORTS);
            assert_eq!(
                udp_checksum(CLIENT_IP, SERVER_IP, &frame[34..]),
                0xffff,
                "frame {n}"
            );
            let port = u16::from_be_bytes([frame[34], frame[35]]);
            assert!(SOURCE_PORTS.contains(&port), "{port}");
            assert_eq!(u64::from(port - SOURCE_PORTS.start), n % 1024);
            assert_eq!(
                u16::from_be_bytes([frame[42], frame[43]]),
                (n / 1024) as u16
            );
            v6.write(&mut frame, n, &SOURCE_PORTS);
            assert_eq!(
                udp6_checksum(CLIENT_IP6, SERVER_IP6, &frame[54..]),
                0xffff,
                "frame {n}"
            );
        }
    }

    #[test]
    fn edns_is_the_same_for_the_generator_and_dnsperf() {
        assert!(
            Edns::default().opt().is_none(),
            "plain queries carry no OPT"
        );
        assert!(Edns::default().dnsperf_args().is_empty());
        let edns = Edns {
            dnssec_ok: true,
            cookie: Some(vec![0x42; 8]),
            client_subnet: Some((IpAddr::V4(Ipv4Addr::new(198, 18, 1, 0)), 24)),
        };
        let opt = edns.opt().expect("an OPT record");
        assert!(opt.dnssec_ok);
        assert_eq!(opt.payload, EDNS_PAYLOAD);
        assert_eq!(
            edns.dnsperf_args(),
            ["-D", "-E", "10:4242424242424242", "-E", "8:00011800c61201"]
        );
    }

    #[test]
    fn query_files_are_read_with_their_lines_named() {
        let path = std::env::temp_dir().join(format!("dnslb-flood-{}.queries", std::process::id()));
        std::fs::write(&path, "www.example.com A\nmail.example.com MX\n").expect("written");
        assert_eq!(
            read_questions(&path).expect("read"),
            [
                ("www.example.com".to_owned(), 1),
                ("mail.example.com".to_owned(), 15)
            ]
        );
        std::fs::write(&path, "www.example.com A\nwww.example.com BOGUS\n").expect("written");
        let error = read_questions(&path).expect_err("refused").to_string();
        assert!(error.ends_with(":2: unknown record type BOGUS"), "{error}");
        let _ = std::fs::remove_file(&path);
    }
}
