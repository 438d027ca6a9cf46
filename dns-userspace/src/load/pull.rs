//! Reading load figures: from each endpoint over HTTP, from its HAProxy
//! agent over TCP, or from Prometheus, every interval, every endpoint of
//! a pool at once (at most [`AT_ONCE`] connections open), handed over as
//! one batch per round.

use std::{net::IpAddr, sync::Weak, time::Duration};

use futures_util::{StreamExt, stream};
use hyper::{Method, Uri};
use tokio::{io::AsyncReadExt, net::TcpStream, task::JoinHandle};

use super::{ADDRESS_PLACEHOLDER, LoadSource, LoadSpec, Reading};
use crate::http;

/// Reads of one pool open at once.
const AT_ONCE: usize = 256;
/// The most a read may take, however long the interval.
const MOST_PER_READ: Duration = Duration::from_secs(2);
/// What an agent's reply may hold: HAProxy reads one short line.
const AGENT_REPLY_LIMIT: usize = 512;

/// Where the readings go, and which endpoints a pool has now.
pub trait LoadSink: Send + Sync + 'static {
    fn endpoints(&self, pool: &str) -> Vec<IpAddr>;
    /// A round's readings: a reading, or why there is none.
    fn take(&self, pool: &str, readings: Vec<(IpAddr, Result<Reading, String>)>);
}

/// Reads the load of `pool`'s endpoints as `spec` says, every interval,
/// until the sink is gone or the task is aborted.
pub fn spawn(pool: String, spec: LoadSpec, sink: Weak<dyn LoadSink>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Some(interval) = spec.interval() else {
            return;
        };
        let timeout = interval.min(MOST_PER_READ);
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(addresses) = sink.upgrade().map(|sink| sink.endpoints(&pool)) else {
                return;
            };
            let readings: Vec<_> = stream::iter(addresses)
                .map(|address| {
                    let spec = &spec;
                    async move {
                        let read = tokio::time::timeout(timeout, read(&spec.source, address));
                        let reading = match read.await {
                            Ok(reading) => reading,
                            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
                        };
                        (address, reading)
                    }
                })
                .buffer_unordered(AT_ONCE)
                .collect()
                .await;
            let Some(sink) = sink.upgrade() else {
                return;
            };
            tokio::task::block_in_place(|| sink.take(&pool, readings));
        }
    })
}

/// One endpoint's reading from `source`.
async fn read(source: &LoadSource, address: IpAddr) -> Result<Reading, String> {
    match source {
        LoadSource::Push => Err("pushed figures are not read".into()),
        LoadSource::Http { url, .. } => {
            let host = match address {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            };
            let uri: Uri = url
                .replace(ADDRESS_PLACEHOLDER, &host)
                .parse()
                .map_err(|e| format!("the URL: {e}"))?;
            let (status, body) = http::fetch(Method::GET, &uri, None).await?;
            if !status.is_success() {
                return Err(format!("HTTP status {status}"));
            }
            let body = body?;
            reading(&body)
        }
        LoadSource::Agent { port, .. } => {
            let mut stream = TcpStream::connect((address, *port))
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let mut reply = Vec::with_capacity(64);
            // The agent writes its line and closes; a longer reply is cut.
            let mut limited = (&mut stream).take(AGENT_REPLY_LIMIT as u64);
            limited
                .read_to_end(&mut reply)
                .await
                .map_err(|e| format!("receive: {e}"))?;
            let line = reply.split(|&b| b == b'\n').next().unwrap_or_default();
            reading(line)
        }
        LoadSource::Prometheus { url, query, .. } => {
            let query = query.replace(ADDRESS_PLACEHOLDER, &address.to_string());
            let encoded = serde_urlencoded::to_string([("query", query.as_str())])
                .map_err(|e| e.to_string())?;
            let uri: Uri = format!("{}/api/v1/query?{encoded}", url.trim_end_matches('/'))
                .parse()
                .map_err(|e| format!("the URL: {e}"))?;
            let (status, body) = http::fetch(Method::GET, &uri, None).await?;
            if !status.is_success() {
                return Err(format!("Prometheus answered HTTP status {status}"));
            }
            let body = body?;
            prometheus_value(&body).and_then(|text| reading(text.as_bytes()))
        }
    }
}

fn reading(bytes: &[u8]) -> Result<Reading, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the reply is not text".to_owned())?;
    Reading::parse(text).map_err(|e| e.to_string())
}

/// The one sample's value of a Prometheus instant query's answer.
fn prometheus_value(body: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        status: String,
        #[serde(default)]
        data: Option<Data>,
        #[serde(default)]
        error: Option<String>,
    }
    #[derive(serde::Deserialize)]
    #[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
    enum Data {
        Vector(Vec<Series>),
        Scalar((f64, String)),
        /// Range vectors and strings are no one figure: refused below.
        Matrix(serde::de::IgnoredAny),
        String(serde::de::IgnoredAny),
    }
    #[derive(serde::Deserialize)]
    struct Series {
        value: (f64, String),
    }
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| format!("Prometheus's answer is not its API's JSON: {e}"))?;
    if answer.status != "success" {
        return Err(format!(
            "Prometheus: {}",
            answer.error.unwrap_or_else(|| answer.status.clone())
        ));
    }
    match answer.data {
        Some(Data::Vector(series)) => match series.as_slice() {
            [one] => Ok(one.value.1.clone()),
            [] => Err("the query gives no sample for this endpoint".into()),
            many => Err(format!(
                "the query gives {} series for this endpoint; it must give one",
                many.len()
            )),
        },
        Some(Data::Scalar((_, value))) => Ok(value),
        Some(Data::Matrix(_) | Data::String(_)) | None => {
            Err("the query must give an instant vector or a scalar".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prometheus_answer_gives_its_one_sample() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"instance":"198.18.0.1:9100"},"value":[1765000000.5,"0.42"]}]}}"#;
        assert_eq!(prometheus_value(vector), Ok("0.42".into()));
        let scalar =
            br#"{"status":"success","data":{"resultType":"scalar","result":[1765000000,"7"]}}"#;
        assert_eq!(prometheus_value(scalar), Ok("7".into()));
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(prometheus_value(empty).unwrap_err().contains("no sample"));
        let error = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        assert!(prometheus_value(error).unwrap_err().contains("parse error"));
        assert!(
            prometheus_value(b"<html>")
                .unwrap_err()
                .contains("not its API's JSON")
        );
    }
}
