//! A real browser for the console tests: Debian's chromium, headless,
//! driven through chromedriver over WebDriver (fantoccini). Both run in a
//! namespace of the rig, so the console is reached on that namespace's
//! loopback; the driver and every browser process are killed, as a
//! process group, when the [`Browser`] is dropped.

use std::{
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use serde_json::json;

use crate::netns::Netns;

/// The port chromedriver listens on, on the namespace's loopback.
const DRIVER_PORT: u16 = 9515;

/// How long the tests wait for the console to show something by default.
pub const SHOW_WITHIN: Duration = Duration::from_secs(10);

pub struct Browser {
    client: Option<Client>,
    driver: Child,
    profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver in `netns` and opens a headless chromium of
    /// `width` × `height` pixels. Call from a thread inside `netns`.
    pub async fn start(netns: &Netns, width: u32, height: u32) -> anyhow::Result<Browser> {
        let log = std::env::temp_dir().join(format!("{}.chromedriver.log", netns.name()));
        let mut command = netns.command("setsid");
        command
            .args(["chromedriver", &format!("--port={DRIVER_PORT}")])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(&log)?);
        let driver = command.spawn().context("starting chromedriver")?;
        let profile = std::env::temp_dir().join(format!("{}.chromium", netns.name()));
        // From here on, a failure drops the driver and what it started.
        let mut browser = Browser {
            client: None,
            driver,
            profile,
        };
        let client = connect(&browser.profile, width, height).await?;
        client.set_window_size(width, height).await?;
        browser.client = Some(client);
        Ok(browser)
    }

    /// The WebDriver session.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("a session is opened at start")
    }

    /// Goes to `url` and signs in with `token`.
    pub async fn sign_in(&self, url: &str, token: &str) -> anyhow::Result<()> {
        self.client().goto(url).await?;
        let input = self.wait_for(Locator::Id("token")).await?;
        input.send_keys(token).await?;
        self.client()
            .find(Locator::Css("#login button[type=submit]"))
            .await?
            .click()
            .await?;
        Ok(())
    }

    /// The first element `locator` finds, within [`SHOW_WITHIN`].
    pub async fn wait_for(&self, locator: Locator<'_>) -> anyhow::Result<Element> {
        Ok(self
            .client()
            .wait()
            .at_most(SHOW_WITHIN)
            .for_element(locator)
            .await?)
    }

    /// Waits for the element `locator` finds and clicks it.
    pub async fn click(&self, locator: Locator<'_>) -> anyhow::Result<()> {
        self.wait_for(locator).await?.click().await?;
        Ok(())
    }

    /// Answers the console's confirmation dialog with its Confirm button,
    /// once the dialog is open: the button is always in the page, and a
    /// closed dialog's button cannot be clicked.
    pub async fn confirm(&self) -> anyhow::Result<()> {
        self.until("document.getElementById('confirm').open", SHOW_WITHIN)
            .await
            .context("the confirmation dialog opens")?;
        self.click(Locator::Id("confirm-ok"))
            .await
            .context("clicking Confirm")
    }

    /// Waits for the element `locator` finds and types `text` into it.
    pub async fn type_into(&self, locator: Locator<'_>, text: &str) -> anyhow::Result<()> {
        self.wait_for(locator).await?.send_keys(text).await?;
        Ok(())
    }

    /// Waits (up to `within`, polling every 20 ms) until the page's
    /// JavaScript expression `condition` is true; returns how long it took.
    pub async fn until(&self, condition: &str, within: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let script = format!("return Boolean({condition});");
        loop {
            if self.client().execute(&script, Vec::new()).await? == json!(true) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > within {
                bail!("`{condition}` was not true within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The value of the page's JavaScript expression `expression`.
    pub async fn eval(&self, expression: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self
            .client()
            .execute(&format!("return {expression};"), Vec::new())
            .await?)
    }

    /// Saves a screenshot as `target/console-screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = crate::daemon::workspace_root().join("target/console-screenshots");
        std::fs::create_dir_all(&dir)?;
        let file = dir.join(format!("{name}.png"));
        std::fs::write(&file, self.client().screenshot().await?)?;
        Ok(file)
    }

    /// Ends the session (chromium exits); the driver stops on drop.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }
}

/// Connects to the driver (retrying while it starts) and opens a session.
async fn connect(profile: &std::path::Path, width: u32, height: u32) -> anyhow::Result<Client> {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-extensions",
                "--hide-scrollbars",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let url = format!("http://127.0.0.1:{DRIVER_PORT}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(&url)
            .await;
        match attempt {
            Ok(client) => return Ok(client),
            Err(error) if Instant::now() > deadline => {
                bail!("no WebDriver session from chromedriver within 20 s: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver leads its own process group (setsid), and chromium
        // runs in it: one signal stops them all.
        let _ = killpg(Pid::from_raw(self.driver.id() as i32), Signal::SIGKILL);
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Runs `test` on a thread inside `netns`, on a runtime of its own: the
/// browser, its driver and the console all meet on that namespace's
/// loopback.
pub fn in_netns<T: Send>(
    netns: &Netns,
    test: impl AsyncFnOnce() -> anyhow::Result<T> + Send,
) -> anyhow::Result<T> {
    netns.run(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(test())
    })?
}
