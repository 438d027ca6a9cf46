//! One hook's delivery: its queue in order, each event tried until it is
//! delivered or out of retries, then written to the dead-letter file.

use std::{io::Write, path::PathBuf, process::Stdio, time::Duration};

use hyper::{Method, body::Bytes};
use tokio::{io::AsyncWriteExt, sync::mpsc};

use super::{HookMetrics, HookSpec, HookTarget, Queued};
use crate::{http, shell};

/// The longest wait between two attempts, however many retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

pub(super) async fn deliver(
    spec: HookSpec,
    dead_letter: PathBuf,
    mut queue: mpsc::UnboundedReceiver<Queued>,
    metrics: HookMetrics,
) {
    let count = |outcome: &str| {
        metrics
            .events
            .with_label_values(&[spec.name.as_str(), outcome])
            .inc()
    };
    while let Some(event) = queue.recv().await {
        let mut wait = spec.backoff;
        let mut attempt = 0;
        let failure = loop {
            let tried =
                tokio::time::timeout(spec.timeout, attempt_once(&spec.target, &event)).await;
            let error = match tried {
                Ok(Ok(())) => break None,
                Ok(Err(error)) => error,
                Err(_) => format!("no answer within {:?}", spec.timeout),
            };
            if attempt == spec.retries {
                break Some(error);
            }
            attempt += 1;
            count("retried");
            tracing::debug!(hook = %spec.name, "hook {}: {error}; retry {attempt} in {wait:?}", spec.name);
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_BACKOFF);
        };
        match failure {
            None => count("delivered"),
            Some(error) => {
                count("dead_lettered");
                tracing::warn!(
                    hook = %spec.name,
                    "hook {}: not delivered after {} attempts ({error}); written to {}",
                    spec.name,
                    spec.retries + 1,
                    dead_letter.display()
                );
                if let Err(error) = append(&dead_letter, &event.json) {
                    tracing::error!(
                        hook = %spec.name,
                        "hook {}: writing {}: {error}; the event is lost: {}",
                        spec.name,
                        dead_letter.display(),
                        event.json
                    );
                }
            }
        }
    }
}

async fn attempt_once(target: &HookTarget, event: &Queued) -> Result<(), String> {
    match target {
        HookTarget::Webhook(uri) => post(uri, &event.json).await,
        HookTarget::Command(command) => {
            let mut child = shell::command(command, [("DNSLB_EVENT", kind_name(event).into())])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("running `sh -c`: {e}"))?;
            let _group = shell::Group::of(&child);
            if let Some(mut stdin) = child.stdin.take() {
                // One line: commands can append it to a JSON-lines file.
                // A command that does not read its input is its business.
                let line = format!("{}\n", event.json);
                let _ = stdin.write_all(line.as_bytes()).await;
            }
            let status = child.wait().await.map_err(|e| e.to_string())?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("command exited with {status}"))
            }
        }
    }
}

fn kind_name(event: &Queued) -> &'static str {
    match event.kind {
        super::EventKind::Health => "health",
        super::EventKind::Failover => "failover",
        super::EventKind::Container => "container",
        super::EventKind::Function => "function",
    }
}

/// POSTs `json` to `uri` over HTTP/1.1; a 2xx status is success.
async fn post(uri: &hyper::Uri, json: &str) -> Result<(), String> {
    let body = Bytes::from(json.to_owned());
    let (status, _) = http::fetch(Method::POST, uri, Some(("application/json", body))).await?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the webhook answered {status}"))
    }
}

fn append(file: &PathBuf, json: &str) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    writeln!(out, "{json}")
}
