//! The customer web page in a real browser: Debian's chromium, headless, driven through
//! chromedriver (WebDriver) — sign in as a seeded customer, send the request, and watch the
//! agents' progress and the answer arrive on the page. `bash .ci/test` installs both; without
//! them this test fails and says how to get them (it never skips).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use choreo_tests::served::Served;
use fantoccini::{ClientBuilder, Locator};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn program(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} not found: install Debian's chromium and chromium-driver (`apt-get install chromium chromium-driver`; \
         bash .ci/test does), or set {env}",
        path.display()
    );
    path
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver on a free port, once it accepts connections.
fn start_driver(chromedriver: &Path) -> (Driver, String) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver(child);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < WAIT, "chromedriver did not open port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (driver, format!("http://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_signs_in_asks_and_sees_the_answer_arrive() {
    let chromium = program("CHOREO_CHROMIUM", "/usr/bin/chromium");
    let chromedriver = program("CHOREO_CHROMEDRIVER", "/usr/bin/chromedriver");
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(&dir.path().join("data"));
    let (_driver, webdriver) = start_driver(&chromedriver);

    let profile = dir.path().join("profile");
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    let serde_json::Value::Object(capabilities) = capabilities else { unreachable!() };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let browser =
        ClientBuilder::new(connector).capabilities(capabilities).connect(&webdriver).await.expect("start chromium");

    let result = async {
        browser.goto(&served.base).await?;
        let customer =
            browser.wait().at_most(WAIT).for_element(Locator::Css("#customer option[value='c-1001']")).await?;
        customer.click().await?;
        browser.find(Locator::Id("sign-in-button")).await?.click().await?;
        let who = browser.wait().at_most(WAIT).for_element(Locator::Css("#order option[value='o-1001']")).await?;
        who.click().await?;
        let signed_in = browser.find(Locator::Id("who")).await?.text().await?;
        browser.find(Locator::Id("submit")).await?.click().await?;
        let answer = browser.wait().at_most(WAIT).for_element(Locator::Css("#answer[data-state='done']")).await?;
        let answer_text = answer.text().await?;
        let progress = browser.find_all(Locator::Css("#progress li")).await?;
        let mut steps = Vec::new();
        for step in &progress {
            steps.push(step.text().await?);
        }
        let case = browser.find(Locator::Id("case-id")).await?.text().await?;
        Ok::<_, fantoccini::error::CmdError>((signed_in, answer_text, steps, case))
    }
    .await;
    let _ = browser.close().await;
    let (signed_in, answer, steps, case) = result.expect("drive the page");

    assert!(signed_in.contains("c-1001"), "{signed_in}");
    assert!(case.starts_with("Case "), "{case}");
    assert!(answer.to_lowercase().contains("refund"), "the answer on the page: {answer}");
    let all = steps.join("\n");
    for agent in ["Support", "Payments", "Orders"] {
        assert!(steps.iter().any(|s| s.starts_with(agent)), "no progress from {agent}:\n{all}");
    }
    assert!(steps.iter().any(|s| s.contains("OrderSupportCompleted")), "{all}");
}
