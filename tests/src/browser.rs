//! A real browser for the web console tests: headless Chromium (Debian
//! `chromium`) driven over WebDriver by `chromedriver` (Debian
//! `chromium-driver`), both started here on loopback with a fresh profile
//! and the flags this machine needs (no sandbox as root, no GPU, and none
//! of Chromium's background traffic, which the closed network refuses).
//! Missing binaries fail the test saying how to install them.
//!
//! Screenshots go to `<target dir>/console-screenshots/` (the
//! `CARGO_TARGET_DIR` the tests run with, else `target/`), as test
//! artefacts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::ports::start_on_free_ports;
use crate::process::{ChildProcess, wait_for_port};
use crate::workspace_root;

/// Where Debian installs them (`apt-get install chromium chromium-driver`).
const CHROMEDRIVER: [&str; 2] = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];
const CHROMIUM: [&str; 2] = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"];

/// How long a page element is waited for.
pub const WAIT: Duration = Duration::from_secs(20);

/// One headless Chromium, its driver and its profile; stopped on drop.
pub struct Browser {
    client: Client,
    /// Prefix of this test's screenshot files.
    name: String,
    _driver: ChildProcess,
    _profile: tempfile::TempDir,
}

fn first_existing(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// `<target dir>/console-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("console-screenshots")
}

impl Browser {
    /// Starts chromedriver and a 1280×900 headless Chromium; `name`
    /// prefixes this browser's screenshots.
    pub async fn start(name: &str) -> anyhow::Result<Browser> {
        let install = "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; scripts/test.sh does)";
        let driver_bin = first_existing(&CHROMEDRIVER)
            .with_context(|| format!("chromedriver not found in {CHROMEDRIVER:?}: {install}"))?;
        let chromium = first_existing(&CHROMIUM)
            .with_context(|| format!("chromium not found in {CHROMIUM:?}: {install}"))?;
        let profile = tempfile::Builder::new()
            .prefix("pgvault-chromium-")
            .tempdir()?;
        let (driver, port) = start_on_free_ports(1, |ports| {
            let port = ports[0];
            let mut command = Command::new(&driver_bin);
            command.args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()]);
            let mut driver = ChildProcess::spawn(
                "chromedriver",
                command,
                &profile.path().join("chromedriver.log"),
            )?;
            wait_for_port(port, Duration::from_secs(30), &mut driver)?;
            Ok((driver, port))
        })?;
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": chromium_args(profile.path()),
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            bail!("capabilities are an object");
        };
        // The WebDriver client's TLS stack needs a process-wide provider.
        pgvault_proto::tls::install_crypto_provider();
        let client = ClientBuilder::rustls()
            .context("WebDriver client")?
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .with_context(|| {
                format!(
                    "cannot start headless Chromium through chromedriver:\n{}",
                    driver.log_tail(30)
                )
            })?;
        client.set_window_size(1280, 900).await?;
        std::fs::create_dir_all(screenshot_dir())?;
        Ok(Browser {
            client,
            name: name.to_string(),
            _driver: driver,
            _profile: profile,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("open {url}"))
    }

    pub async fn url(&self) -> anyhow::Result<String> {
        Ok(self.client.current_url().await?.to_string())
    }

    /// Saves the page as `<name>-<page>.png`; returns the file.
    pub async fn screenshot(&self, page: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let path = screenshot_dir().join(format!("{}-{page}.png", self.name));
        std::fs::write(&path, png).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    /// The element matching `css`, waited for.
    pub async fn find(&self, css: &str) -> anyhow::Result<Element> {
        match self
            .client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => Ok(element),
            Err(e) => bail!("no element {css} ({e}) on {}", self.page_for_errors().await),
        }
    }

    /// Whether an element matches `css` now (no waiting).
    pub async fn exists(&self, css: &str) -> anyhow::Result<bool> {
        Ok(!self.client.find_all(Locator::Css(css)).await?.is_empty())
    }

    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        Ok(self.find(css).await?.text().await?)
    }

    /// The page's visible text.
    pub async fn body_text(&self) -> anyhow::Result<String> {
        self.text("body").await
    }

    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.find(css)
            .await?
            .click()
            .await
            .with_context(|| format!("click {css}"))
    }

    pub async fn fill(&self, css: &str, value: &str) -> anyhow::Result<()> {
        let element = self.find(css).await?;
        element.clear().await?;
        element
            .send_keys(value)
            .await
            .with_context(|| format!("type into {css}"))
    }

    /// Picks the `<option>` whose value is `value` in the `<select>` `css`.
    pub async fn select(&self, css: &str, value: &str) -> anyhow::Result<()> {
        self.find(css)
            .await?
            .select_by_value(value)
            .await
            .with_context(|| format!("select {value} in {css}"))
    }

    /// Waits until the text of `css` contains `needle`; returns it.
    pub async fn wait_for_text(
        &self,
        css: &str,
        needle: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(needle) {
                return Ok(text);
            }
            if Instant::now() > deadline {
                bail!(
                    "{css} never showed {needle:?} within {timeout:?}; it shows {text:?} on {}",
                    self.page_for_errors().await
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs `script` in the page and returns its value.
    pub async fn run(&self, script: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self.client.execute(script, Vec::new()).await?)
    }

    /// The URL and the start of the page's text, for failure messages.
    async fn page_for_errors(&self) -> String {
        let url = self.url().await.unwrap_or_default();
        let text = match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        format!("{url}:\n{}", text.chars().take(1500).collect::<String>())
    }

    pub async fn close(self) -> anyhow::Result<()> {
        self.client.close().await?;
        Ok(())
    }
}

/// Chromium's flags: headless in a fresh profile, and nothing that talks
/// to the network on its own.
fn chromium_args(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
        "--window-size=1280,900",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}
