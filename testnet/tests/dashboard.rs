//! The dashboard in a real browser: Chromium, driven through chromedriver (WebDriver) by
//! `fantoccini`, against a real 4-replica testnet. What a user does with clicks must reach the
//! replicas (an equivocating primary is caught, a 2/2 partition stops progress, healing resumes
//! it) and the page must show it, with the safety verdict staying "safe" throughout. On a
//! proof-of-work testnet the page draws the block tree, live, with its k-deep final prefix.
//!
//! Skipped, with a message, only where no Chromium or chromedriver is installed
//! (`scripts/setup --tests` installs Debian's `chromium` and `chromium-driver`).

mod support;

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

/// Chromium and chromedriver, or `None` (and a message) where they are not installed.
fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    match (
        find(&["chromium", "chromium-browser", "google-chrome"]),
        find(&["chromedriver"]),
    ) {
        (Some(chromium), Some(chromedriver)) => Some((chromium, chromedriver)),
        _ => {
            println!(
                "SKIPPED: no chromium and chromedriver on PATH (scripts/setup --tests installs Debian's chromium and chromium-driver)"
            );
            None
        }
    }
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

/// chromedriver, in a process group of its own with the Chromium it starts; the whole group is
/// killed (and chromedriver reaped) when the test ends, however it ends. Killing chromedriver
/// alone left its browsers running after the test (two per run).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_driver(chromedriver: &Path) -> (Driver, u16) {
    let port = free_port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver(child);
    let until = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(
            Instant::now() < until,
            "chromedriver did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (driver, port)
}

async fn browser(port: u16, chromium: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            // As root in a container Chromium needs --no-sandbox; headless needs no display.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,2200"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session")
}

/// Runs `script` in the page and returns what it returns as strings. One script reads the DOM in
/// one go: the page replaces its cards and its tree at every sample, so element handles found
/// first and read afterwards can be stale by then (and read as empty).
async fn read(c: &Client, script: &str, css: &str) -> Vec<String> {
    match c.execute(script, vec![serde_json::Value::from(css)]).await {
        Ok(serde_json::Value::Array(values)) => values
            .into_iter()
            .map(|v| v.as_str().map(str::to_string).unwrap_or_default())
            .collect(),
        _ => Vec::new(),
    }
}

/// Text of every element matching `css`, read in one snapshot of the page.
async fn texts(c: &Client, css: &str) -> Vec<String> {
    read(
        c,
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText ?? e.textContent);",
        css,
    )
    .await
}

/// `data-height` of every element matching `css`, read in one snapshot of the page.
async fn data_heights(c: &Client, css: &str) -> Vec<u64> {
    read(
        c,
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.getAttribute('data-height') || '');",
        css,
    )
    .await
    .iter()
    .filter_map(|h| h.parse().ok())
    .collect()
}

/// Every card's executed height, or nothing while any card does not show one (yet).
async fn heights(c: &Client) -> Vec<u64> {
    let read: Option<Vec<u64>> = texts(c, ".card dd.height")
        .await
        .iter()
        .map(|t| t.trim().parse().ok())
        .collect();
    read.unwrap_or_default()
}

/// The four cards' heights, waiting (up to 10 s) for a sample that shows all four.
async fn four_heights(c: &Client) -> Vec<u64> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let now = heights(c).await;
        if now.len() == 4 {
            return now;
        }
        assert!(
            Instant::now() < end,
            "the page does not show four heights: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits up to `limit` for `what` to hold of the page, saying `describe` if it never does.
async fn until<F>(c: &Client, limit: Duration, describe: &str, mut what: F)
where
    F: AsyncFnMut(&Client) -> bool,
{
    let end = Instant::now() + limit;
    loop {
        if what(c).await {
            return;
        }
        if Instant::now() > end {
            let message = texts(c, "#message").await;
            let verdict = texts(c, "#verdict-text").await;
            panic!("{describe} (within {limit:?}); page message {message:?}, verdict {verdict:?}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn screenshot(c: &Client, dir: &Path, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write the screenshot");
    println!("screenshot: {}", path.display());
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("cannot click `{css}`: {e}"));
}

async fn verdict(c: &Client) -> String {
    texts(c, "#verdict").await.concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_attacks_the_testnet_from_the_page_and_watches_pbft_hold() {
    let Some((chromium, chromedriver)) = browser_binaries() else {
        return;
    };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let net = support::start("dashboard", 4, 8).await;
    let url = quire_testnet::dashboard::start(
        &net.tn.layout,
        Path::new(env!("CARGO_BIN_EXE_quire-testnet")),
        0,
    )
    .expect("the dashboard starts");
    let (_driver, port) = start_driver(&chromedriver);
    let c = browser(port, &chromium).await;
    c.goto(&url).await.expect("open the dashboard");

    // Four cards, and heights that grow under the page's own load generator.
    until(
        &c,
        Duration::from_secs(15),
        "four replica cards",
        async |c| texts(c, ".card").await.len() == 4,
    )
    .await;
    click(&c, "#do-load").await;
    let start = four_heights(&c).await;
    until(
        &c,
        Duration::from_secs(30),
        "every height grows",
        async |c| {
            let now = heights(c).await;
            now.len() == 4 && now.iter().zip(&start).all(|(h, s)| h > s)
        },
    )
    .await;
    until(&c, Duration::from_secs(15), "a safe verdict", async |c| {
        verdict(c).await == "safe"
    })
    .await;
    screenshot(&c, &shots, "1-running").await;

    // Replica 0 (the primary of view 0) equivocates: caught, named, and still safe.
    click(&c, "#b-replica option[value='0']").await;
    click(&c, "#b-name option[value='equivocate']").await;
    click(&c, "#do-behaviour").await;
    until(
        &c,
        Duration::from_secs(10),
        "card 0 says equivocate",
        async |c| texts(c, ".card[data-id='0'] dd.behaviour").await.concat() == "equivocate",
    )
    .await;
    let culprit_0 = async |c: &Client| -> u64 {
        texts(c, "#misbehaviour tr[data-culprit='0'] td.total")
            .await
            .concat()
            .parse()
            .unwrap_or(0)
    };
    until(
        &c,
        Duration::from_secs(30),
        "misbehaviour by culprit 0 is counted",
        async |c| culprit_0(c).await > 0,
    )
    .await;
    let first = culprit_0(&c).await;
    until(
        &c,
        Duration::from_secs(30),
        "misbehaviour by culprit 0 rises",
        async |c| culprit_0(c).await > first,
    )
    .await;
    // The checker ran after the switch: it now judges without replica 0, and says safe.
    until(
        &c,
        Duration::from_secs(20),
        "a safe verdict with 0 faulty",
        async |c| {
            texts(c, "#verdict-text")
                .await
                .concat()
                .contains("ever faulty: [0]")
                && verdict(c).await == "safe"
        },
    )
    .await;
    screenshot(&c, &shots, "2-equivocating").await;

    // A malformed partition is refused, and the page says why.
    let groups = c.find(Locator::Id("groups")).await.expect("groups input");
    groups.clear().await.expect("clear");
    groups.send_keys("0,1 / 9").await.expect("type groups");
    click(&c, "#do-partition").await;
    until(
        &c,
        Duration::from_secs(10),
        "the page shows the refusal",
        async |c| {
            texts(c, "#message")
                .await
                .concat()
                .contains("refused (400): replica 9 does not exist")
        },
    )
    .await;

    // 0,1 / 2,3: no side has a quorum of 3, so heights stop.
    groups.clear().await.expect("clear");
    groups.send_keys("0,1 / 2,3").await.expect("type groups");
    click(&c, "#do-partition").await;
    until(
        &c,
        Duration::from_secs(10),
        "the partition is applied",
        async |c| {
            texts(c, "#message")
                .await
                .concat()
                .starts_with("partitioned")
        },
    )
    .await;
    // Blocks in flight when the links were cut may still land: let them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // No new block anywhere: the highest height stays. (A replica that lagged may still fetch
    // blocks already committed from the replica on its side, so single heights may rise to it.)
    let stopped = four_heights(&c).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = four_heights(&c).await;
    let top = |h: &[u64]| h.iter().copied().max().unwrap_or(0);
    assert_eq!(
        top(&stopped),
        top(&later),
        "a block was committed during a 2/2 partition: {stopped:?} then {later:?}"
    );
    screenshot(&c, &shots, "3-partitioned").await;

    // Heal: the honest replicas commit again (after a view change away from 0 if need be).
    click(&c, "#do-heal").await;
    until(
        &c,
        Duration::from_secs(60),
        "heights resume after heal",
        async |c| {
            let now = heights(c).await;
            now.len() == 4 && (1..4).all(|i| now[i] > later[i])
        },
    )
    .await;
    until(
        &c,
        Duration::from_secs(20),
        "still safe after heal",
        async |c| verdict(c).await == "safe",
    )
    .await;
    screenshot(&c, &shots, "4-healed").await;

    // A closed tab leaves no stream behind on the server.
    c.close().await.expect("close the browser");
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("the dashboard's address");
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let open = quire_testnet::ops::http_request(addr, "GET", "/api/streams")
            .expect("the dashboard answers");
        if open.trim() == "0" {
            break;
        }
        assert!(
            Instant::now() < end,
            "{open} event streams still open after the browser closed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // `down` stops the dashboard with the replicas.
    let pid = quire_testnet::process::read_pid(&net.tn.layout.dashboard_pid())
        .expect("the dashboard's pid");
    net.tn.stop_all().expect("stop");
    assert!(
        !quire_testnet::process::alive(pid),
        "the dashboard outlived down"
    );
    assert!(quire_testnet::dashboard::url(&net.tn.layout).is_none());
}

/// How many elements match `css`.
async fn count(c: &Client, css: &str) -> usize {
    texts(c, css).await.len()
}

/// The highest block drawn in the tree.
async fn top_height(c: &Client) -> u64 {
    data_heights(c, "#pow-tree .block")
        .await
        .into_iter()
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pow_testnet_shows_its_block_tree_and_final_prefix_live() {
    let Some((chromium, chromedriver)) = browser_binaries() else {
        return;
    };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    const K: u32 = 3;
    // A block every half second: the tree grows visibly within seconds.
    let net = support::start_with("dashboard-pow", support::pow_plan(K)).await;
    let url = quire_testnet::dashboard::start(
        &net.tn.layout,
        Path::new(env!("CARGO_BIN_EXE_quire-testnet")),
        0,
    )
    .expect("the dashboard starts");
    let (_driver, port) = start_driver(&chromedriver);
    let c = browser(port, &chromium).await;
    c.goto(&url).await.expect("open the dashboard");

    // The tree is drawn from the replicas' own answers: blocks, every replica's head, and a
    // final prefix k deep below the reference head.
    until(
        &c,
        Duration::from_secs(30),
        "a tree with blocks, heads and a final prefix",
        async |c| {
            count(c, "#pow-tree .block").await > K as usize
                && count(c, "#pow-tree .block.final").await >= 1
                && count(c, "#pow-tree .prefix").await == 1
                && !texts(c, "#pow-tree .head").await.is_empty()
        },
    )
    .await;
    // The final prefix is exactly what is k deep on the reference chain.
    let label = texts(&c, "#pow-tree .prefix-label").await.concat();
    assert!(label.contains(&format!("k = {K} deep")), "{label}");
    // Live: new blocks appear within seconds, and the final prefix follows them.
    let top = top_height(&c).await;
    until(&c, Duration::from_secs(20), "the tree grows", async |c| {
        top_height(c).await >= top + 2
    })
    .await;
    // The final blocks and the top, read in one snapshot of the tree.
    let snapshot = read(
        &c,
        "const t = document.querySelector(arguments[0]); if (!t) return []; \
         return Array.from(t.querySelectorAll('.block')).map(e => \
           (e.classList.contains('final') ? 'f' : 'b') + (e.getAttribute('data-height') || ''));",
        "#pow-tree",
    )
    .await;
    let finals: Vec<u64> = snapshot
        .iter()
        .filter_map(|b| b.strip_prefix('f')?.parse().ok())
        .collect();
    let top = snapshot
        .iter()
        .filter_map(|b| b.get(1..)?.parse().ok())
        .max()
        .unwrap_or(0);
    assert!(
        !finals.is_empty(),
        "no final block in the tree: {snapshot:?}"
    );
    assert!(
        finals.iter().all(|h| h + u64::from(K) <= top + 1),
        "a block marked final less than k deep: finals {finals:?}, top {top}"
    );
    screenshot(&c, &shots, "5-pow-tree").await;

    // Replica 3 mines selfishly, from the page, with half the hash power: it withholds its
    // blocks and publishes them to orphan the others', so forks and stale blocks appear.
    quire_testnet::pow::hashpower(&net.tn, 3, 60_000).expect("set replica 3's hash power");
    click(&c, "#b-replica option[value='3']").await;
    click(&c, "#b-name option[value='selfish-mine']").await;
    click(&c, "#do-behaviour").await;
    until(
        &c,
        Duration::from_secs(40),
        "a fork with a stale block in the tree",
        async |c| {
            count(c, "#pow-tree .block.stale").await > 0
                && count(c, "#pow-tree .block.fork").await > 0
        },
    )
    .await;
    screenshot(&c, &shots, "6-pow-selfish").await;
    let section = c
        .find(Locator::Id("pow-section"))
        .await
        .expect("the block tree section");
    let png = section
        .screenshot()
        .await
        .expect("a screenshot of the tree");
    let path = shots.join("6-pow-tree-section.png");
    std::fs::write(&path, png).expect("write the screenshot");
    println!("screenshot: {}", path.display());
    c.close().await.expect("close the browser");
}
