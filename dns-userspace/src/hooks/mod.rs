//! Event hooks: health transitions, failovers, container and function
//! events, delivered to a webhook (an HTTP POST of a JSON body) or a
//! command (the JSON on its standard input).
//!
//! Emitting never blocks and never waits: an event is queued for each hook
//! that wants it, and each hook's own task delivers its queue in order,
//! retrying with a doubling backoff. An event that still fails after the
//! last retry is appended to the hook's dead-letter file (one JSON object
//! a line), so nothing is silently lost.

mod deliver;

use std::{net::IpAddr, path::PathBuf, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use prometheus::{IntCounterVec, Opts, Registry};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::metrics::registered;

/// What happened, as the JSON body says it (`"event": "health"`, ...).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A check's verdict on an endpoint changed.
    Health {
        pool: String,
        endpoint: IpAddr,
        up: bool,
    },
    /// The branch a service answers from changed (for clients in no
    /// particular network).
    Failover {
        service: String,
        from: String,
        to: String,
    },
    /// A container of a Docker pool changed state: `ready`, `starting`,
    /// `draining` or `gone`.
    Container {
        pool: String,
        container: String,
        address: IpAddr,
        state: String,
    },
    /// A function instance `started`, became `ready`, `failed`, or was
    /// `stopped`.
    Function {
        pool: String,
        address: IpAddr,
        action: String,
        /// For `ready` after a cold start: query to ready, in seconds.
        #[serde(skip_serializing_if = "Option::is_none")]
        cold_start_seconds: Option<f64>,
    },
}

impl Event {
    /// The kind, as a hook's `events` filter names it.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Health { .. } => EventKind::Health,
            Event::Failover { .. } => EventKind::Failover,
            Event::Container { .. } => EventKind::Container,
            Event::Function { .. } => EventKind::Function,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Health,
    Failover,
    Container,
    Function,
}

/// Where a hook delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookTarget {
    /// `http://host:port/path`: POSTed, any 2xx is delivered.
    Webhook(hyper::Uri),
    /// Run by `sh -c` with the event on standard input (one line) and its
    /// kind in `$DNSLB_EVENT`; exit status 0 is delivered.
    Command(String),
}

/// A configured hook (`[hook.NAME]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookSpec {
    pub name: String,
    pub target: HookTarget,
    /// The kinds it gets; all when empty.
    pub events: Vec<EventKind>,
    /// Attempts after the first.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Longest one attempt may take.
    pub timeout: Duration,
    /// Where undeliverable events go; default `<state dir>/NAME.dead-letter.jsonl`.
    pub dead_letter: Option<PathBuf>,
}

/// One event as queued: its JSON with the time added.
#[derive(Clone, Debug)]
struct Queued {
    kind: EventKind,
    json: Arc<str>,
}

/// The running hooks.
pub struct Hooks {
    queues: ArcSwap<Vec<(HookSpec, mpsc::UnboundedSender<Queued>)>>,
    metrics: HookMetrics,
    state_dir: PathBuf,
}

/// `dnslb_hook_events_total{hook, outcome}`.
#[derive(Clone)]
struct HookMetrics {
    events: IntCounterVec,
}

impl Hooks {
    /// No hooks yet; `set` starts them. Dead-letter files default to
    /// `state_dir`.
    pub fn new(registry: &Registry, state_dir: PathBuf) -> Hooks {
        let events = registered(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "dnslb_hook_events_total",
                    "Hook events by outcome: delivered, retried (each retry), dead_lettered.",
                ),
                &["hook", "outcome"],
            )
            .expect("a valid metric definition"),
        );
        Hooks {
            queues: ArcSwap::from_pointee(Vec::new()),
            metrics: HookMetrics { events },
            state_dir,
        }
    }

    /// Hooks that do nothing, for tests and tools.
    pub fn none() -> Arc<Hooks> {
        Arc::new(Hooks::new(&Registry::new(), std::env::temp_dir()))
    }

    /// Replaces the hooks with `specs`. Hooks whose definition is
    /// unchanged keep their queue; the others finish what they have
    /// queued and end. Call from within the runtime.
    pub fn set(&self, specs: &[HookSpec]) {
        let current = self.queues.load();
        let queues = specs
            .iter()
            .map(|spec| {
                let kept = current.iter().find(|(running, _)| running == spec);
                let sender = match kept {
                    Some((_, sender)) => sender.clone(),
                    None => {
                        let (sender, queue) = mpsc::unbounded_channel();
                        let dead_letter = spec.dead_letter.clone().unwrap_or_else(|| {
                            self.state_dir
                                .join(format!("{}.dead-letter.jsonl", spec.name))
                        });
                        tokio::spawn(deliver::deliver(
                            spec.clone(),
                            dead_letter,
                            queue,
                            self.metrics.clone(),
                        ));
                        sender
                    }
                };
                (spec.clone(), sender)
            })
            .collect();
        self.queues.store(Arc::new(queues));
    }

    /// Queues `event` for every hook that wants it; never blocks.
    pub fn emit(&self, event: Event) {
        let queues = self.queues.load();
        if queues.is_empty() {
            return;
        }
        let kind = event.kind();
        let Ok(mut body) = serde_json::to_value(&event) else {
            return;
        };
        if let Some(fields) = body.as_object_mut() {
            fields.insert("time".to_owned(), unix_seconds().into());
        }
        let json: Arc<str> = body.to_string().into();
        for (spec, queue) in queues.iter() {
            if spec.events.is_empty() || spec.events.contains(&kind) {
                let _ = queue.send(Queued {
                    kind,
                    json: json.clone(),
                });
            }
        }
    }
}

fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}
