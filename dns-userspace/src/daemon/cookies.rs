//! DNS cookie secrets at run time: made at start or read from a file,
//! rotated, re-read on SIGHUP, and handed to the responder and the kernel
//! together with the kernel's clock offset.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;

use crate::{
    cli::RunArgs,
    dataplane::{Dataplane, SharedDataplane},
    server::{CookieKeys, Responder},
    shared::Shared,
};

/// The cookie secrets in use, and where they come from.
pub struct Cookies {
    keys: CookieKeys,
    file: Option<std::path::PathBuf>,
    /// How often a generated secret is replaced (never for a file's).
    rotation: Option<Duration>,
    rotated: Instant,
}

impl Cookies {
    pub fn start(args: &RunArgs) -> anyhow::Result<Cookies> {
        let keys = match &args.cookie_secret_file {
            Some(file) => CookieKeys::read(file)?,
            None => CookieKeys::generated().context("making a cookie secret")?,
        };
        let rotation = (args.cookie_secret_file.is_none() && args.cookie_rotation > 0)
            .then(|| Duration::from_secs(args.cookie_rotation));
        Ok(Cookies {
            keys,
            file: args.cookie_secret_file.clone(),
            rotation,
            rotated: Instant::now(),
        })
    }
}

/// Gives the responder and the kernel the current secrets and clock offset.
pub fn publish_cookies(
    cookies: &Shared<Cookies>,
    responder: &Responder,
    dataplane: Option<&Shared<Dataplane>>,
) -> anyhow::Result<()> {
    let secrets = cookies.lock()?.keys.secrets();
    responder.set_cookie_secrets(secrets);
    if let Some(dataplane) = dataplane {
        dataplane
            .lock()?
            .set_cookie_secrets(&secrets)
            .context("writing the cookie secrets to the kernel")?;
    }
    Ok(())
}

/// Every minute: rotates a generated secret when it is due, and refreshes
/// the kernel's clock offset (the wall clock may have been stepped).
pub async fn keep_cookies(
    cookies: Arc<Shared<Cookies>>,
    responder: Arc<Responder>,
    dataplane: Option<SharedDataplane>,
) -> std::io::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let rotated = cookies.lock().map(|mut cookies| {
            let due = cookies
                .rotation
                .is_some_and(|every| cookies.rotated.elapsed() >= every);
            if due {
                match cookies.keys.rotated() {
                    Ok(keys) => {
                        cookies.keys = keys;
                        cookies.rotated = Instant::now();
                    }
                    Err(error) => tracing::error!("rotating the cookie secret: {error}"),
                }
            }
            due
        });
        match rotated {
            Ok(true) => tracing::info!("cookie secret rotated; the previous one is still accepted"),
            Ok(false) => {}
            Err(error) => tracing::error!("{error:#}"),
        }
        if let Err(error) = publish_cookies(&cookies, &responder, dataplane.as_deref()) {
            tracing::error!("{error:#}");
        }
    }
}

/// SIGHUP: reads the cookie secret file again, if there is one; a bad file
/// is logged and the secrets in use stay.
pub fn reload_cookies(
    cookies: &Shared<Cookies>,
    responder: &Responder,
    dataplane: Option<&Shared<Dataplane>>,
) {
    let reread = cookies
        .lock()
        .map_err(anyhow::Error::from)
        .and_then(|mut cookies| {
            let Some(file) = cookies.file.clone() else {
                return Ok(false);
            };
            cookies.keys = CookieKeys::read(&file)?;
            Ok(true)
        });
    match reread {
        Ok(false) => {}
        Ok(true) => match publish_cookies(cookies, responder, dataplane) {
            Ok(()) => tracing::info!("cookie secrets reloaded"),
            Err(error) => tracing::error!("{error:#}"),
        },
        Err(error) => {
            tracing::error!(
                "reloading the cookie secrets failed, keeping the ones in use: {error:#}"
            )
        }
    }
}
