//! The browser harness: chromedriver and a headless Chromium, elements found by their
//! labels and texts, axe-core on each page, screenshots under `target/console-screenshots/`.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// axe-core, vendored (see `tests/data/axe-core/README.md`).
const AXE: &str = include_str!("../data/axe-core/axe.min.js");
pub const TAB: &str = "\u{E004}";
pub const ENTER: &str = "\u{E007}";

/// chromedriver, killed when the test ends.
pub struct Driver {
    pub child: std::process::Child,
    pub url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn find_driver() -> Option<PathBuf> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// chromedriver on a free port, or `None` (and a notice) where it is not installed.
pub fn start_driver() -> Option<Driver> {
    let Some(path) = find_driver() else {
        assert!(
            std::env::var_os("TOWER_APIKEY_REQUIRE_BROWSER").is_none(),
            "TOWER_APIKEY_REQUIRE_BROWSER is set, but chromedriver is not installed \
             (apt-get install chromium chromium-driver)"
        );
        eprintln!("SKIPPED: no chromedriver (apt-get install chromium chromium-driver)");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(driver)
}

pub async fn browser(driver: &Driver) -> Client {
    let mut options = json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900"],
    });
    if std::path::Path::new("/usr/bin/chromium").exists() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// The form control a `<label>` with this text is for.
pub fn labelled(text: &str) -> String {
    format!("//*[@id=//label[normalize-space(.)='{text}']/@for]")
}

pub fn button(text: &str) -> String {
    format!("//button[normalize-space(.)='{text}']")
}

pub fn link(text: &str) -> String {
    format!("//a[normalize-space(.)='{text}']")
}

/// Where screenshots go: `target/console-screenshots/`.
pub fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Visit<'a> {
    pub client: &'a Client,
    /// Pages checked with axe-core, by name.
    pub checked: Vec<String>,
}

impl Visit<'_> {
    pub async fn find(&self, xpath: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::XPath(xpath))
            .await
            .unwrap_or_else(|e| panic!("no {xpath}: {e}"))
    }

    pub async fn fill(&self, label: &str, text: &str) {
        let field = self.find(&labelled(label)).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, xpath: &str) {
        self.find(xpath).await.click().await.unwrap();
    }

    pub async fn text_of(&self, xpath: &str) -> String {
        self.find(xpath).await.text().await.unwrap()
    }

    /// Saves a screenshot as `name`, and checks the page with axe-core: no violation of
    /// impact serious or critical.
    pub async fn check(&mut self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
        self.client
            .execute(&format!("{AXE}\n;return true;"), Vec::new())
            .await
            .expect("axe-core loads");
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] }).then(r => done(
                   r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at ' +
                          v.nodes.map(n => n.target.join(' ')).join(', '))),
                   e => done(['axe failed: ' + e]));",
                Vec::new(),
            )
            .await
            .unwrap();
        let violations: Vec<String> = serde_json::from_value(found).unwrap();
        assert!(violations.is_empty(), "{name}: {violations:#?}");
        self.checked.push(name.to_owned());
    }
}
