//! Starting and stopping one function instance: a command in a process
//! group of its own, or a Docker container (host network, labels dnslb
//! adds) named after its pool and address.
//!
//! Whatever ends an instance — a graceful stop, a reload, the daemon
//! stopping — nothing of it is left running: dropping a [`Stopper`] kills
//! the process group, or force-removes the container.

use std::{collections::HashMap, future::Future, net::IpAddr, pin::Pin};

use bollard::{
    Docker,
    models::{ContainerCreateBody, HostConfig},
    query_parameters::{
        CreateContainerOptions, ListContainersOptions, RemoveContainerOptions,
        StopContainerOptions, WaitContainerOptions,
    },
};
use futures_util::StreamExt;

use super::docker::connect;
use crate::shell;

/// How a function pool starts an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launch {
    /// Run by `sh -c` with `{address}` and `{port}` replaced (and in
    /// `$DNSLB_ADDRESS`, `$DNSLB_PORT`).
    Command(String),
    /// A container of `image` on the host's network, running `command`
    /// (by `/bin/sh -c`, placeholders replaced) or the image's own, with
    /// the same two variables and the labels `dnslb.function`,
    /// `dnslb.address` and `dnslb.port`.
    Image {
        image: String,
        command: Option<String>,
        /// The engine, as a Docker pool's `docker_host`.
        host: Option<String>,
    },
}

/// The label on every container a function pool runs: the pool's name.
pub const FUNCTION_LABEL: &str = "dnslb.function";

/// Ends when the instance ends.
pub type Ended = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What stops an instance.
pub enum Stopper {
    /// A command's process group, killed whole when dropped.
    Group(shell::Group),
    Container {
        host: Option<String>,
        name: String,
    },
}

/// How long a stopped instance has between the polite signal and the kill.
pub const STOP_GRACE_SECS: i32 = 5;

/// Launching an instance: resolves once it runs, to a future that ends
/// with it.
pub type Launching = Pin<Box<dyn Future<Output = Result<Ended, String>> + Send>>;

impl Launch {
    /// Starts an instance of `pool` on `address:port`. What stops it is
    /// known at once (so that nothing can be left behind, whatever happens
    /// while it starts); the rest of the start is the returned future.
    pub fn start(
        &self,
        pool: &str,
        address: IpAddr,
        port: u16,
    ) -> Result<(Stopper, Launching), String> {
        let fill = |text: &str| {
            text.replace("{address}", &address.to_string())
                .replace("{port}", &port.to_string())
        };
        let env = [
            ("DNSLB_ADDRESS", address.to_string()),
            ("DNSLB_PORT", port.to_string()),
        ];
        match self {
            Launch::Command(command) => {
                let command = fill(command);
                let mut child = shell::command(&command, env)
                    .spawn()
                    .map_err(|error| format!("starting `{command}`: {error}"))?;
                let group = shell::Group::of(&child).ok_or("the command ended at once")?;
                let ended: Ended = Box::pin(async move {
                    let _ = child.wait().await;
                });
                Ok((Stopper::Group(group), Box::pin(async move { Ok(ended) })))
            }
            Launch::Image {
                image,
                command,
                host,
            } => {
                let name = container_name(pool, address);
                let stopper = Stopper::Container {
                    host: host.clone(),
                    name: name.clone(),
                };
                let labels = HashMap::from([
                    (FUNCTION_LABEL.to_owned(), pool.to_owned()),
                    ("dnslb.address".to_owned(), address.to_string()),
                    ("dnslb.port".to_owned(), port.to_string()),
                ]);
                let body = ContainerCreateBody {
                    image: Some(image.clone()),
                    cmd: command
                        .as_deref()
                        .map(|c| vec!["/bin/sh".to_owned(), "-c".to_owned(), fill(c)]),
                    env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                    labels: Some(labels),
                    host_config: Some(HostConfig {
                        network_mode: Some("host".to_owned()),
                        ..HostConfig::default()
                    }),
                    ..ContainerCreateBody::default()
                };
                let (host, image) = (host.clone(), image.clone());
                let launching: Launching = Box::pin(async move {
                    let docker = engine(host.as_deref()).await?;
                    // One left by a daemon that died would hold the name.
                    let _ = docker.remove_container(&name, Some(force())).await;
                    let options = CreateContainerOptions {
                        name: Some(name.clone()),
                        ..CreateContainerOptions::default()
                    };
                    docker
                        .create_container(Some(options), body)
                        .await
                        .map_err(|error| format!("creating a container of {image}: {error}"))?;
                    docker
                        .start_container(&name, None)
                        .await
                        .map_err(|error| format!("starting container {name}: {error}"))?;
                    let ended: Ended = Box::pin(async move {
                        let mut waiting = docker.wait_container(
                            &name,
                            Some(WaitContainerOptions {
                                condition: "not-running".to_owned(),
                            }),
                        );
                        let _ = waiting.next().await;
                    });
                    Ok(ended)
                });
                Ok((stopper, launching))
            }
        }
    }

    /// Removes the containers a previous daemon left for `pool`.
    pub async fn clean_up(&self, pool: &str) {
        let Launch::Image { host, .. } = self else {
            return;
        };
        let Ok(docker) = engine(host.as_deref()).await else {
            return;
        };
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![format!("{FUNCTION_LABEL}={pool}")],
            )])),
            ..ListContainersOptions::default()
        };
        for container in docker
            .list_containers(Some(options))
            .await
            .unwrap_or_default()
        {
            if let Some(id) = container.id {
                tracing::info!(
                    pool,
                    "pool {pool}: removing container {id} left from before"
                );
                let _ = docker.remove_container(&id, Some(force())).await;
            }
        }
    }
}

impl Stopper {
    /// Asks the instance to stop (SIGTERM, or `docker stop`); whatever is
    /// left is killed when the stopper is dropped.
    pub async fn stop(&self) {
        match self {
            Stopper::Group(group) => {
                group.terminate();
                tokio::time::sleep(std::time::Duration::from_secs(STOP_GRACE_SECS as u64)).await;
            }
            Stopper::Container { host, name } => {
                if let Ok(docker) = engine(host.as_deref()).await {
                    let options = StopContainerOptions {
                        t: Some(STOP_GRACE_SECS),
                        ..StopContainerOptions::default()
                    };
                    let _ = docker.stop_container(name, Some(options)).await;
                }
            }
        }
    }
}

impl Drop for Stopper {
    fn drop(&mut self) {
        match self {
            // The group kills itself as the field is dropped.
            Stopper::Group(_) => {}
            Stopper::Container { host, name } => {
                // Drop may run where no runtime is (the daemon stopping):
                // a thread of its own, with its own, removes the container.
                let (host, name) = (host.clone(), name.clone());
                let removed = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(async {
                        if let Ok(docker) = engine(host.as_deref()).await {
                            let _ = docker.remove_container(&name, Some(force())).await;
                        }
                    });
                    Ok::<(), std::io::Error>(())
                })
                .join();
                if !matches!(removed, Ok(Ok(()))) {
                    tracing::error!("removing a function container failed");
                }
            }
        }
    }
}

fn force() -> RemoveContainerOptions {
    RemoveContainerOptions {
        force: true,
        ..RemoveContainerOptions::default()
    }
}

/// `dnslb-fn-POOL-ADDRESS`, in the characters Docker allows in names.
fn container_name(pool: &str, address: IpAddr) -> String {
    let clean = |text: String| -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!(
        "dnslb-fn-{}-{}",
        clean(pool.to_owned()),
        clean(address.to_string())
    )
}

async fn engine(host: Option<&str>) -> Result<Docker, String> {
    connect(host)
        .map_err(|error| format!("the Docker engine: {error}"))?
        .negotiate_version()
        .await
        .map_err(|error| format!("the Docker engine: {error}"))
}
