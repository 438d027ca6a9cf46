//! The web console in a real browser: Debian's chromium, headless, driven
//! through chromedriver, against the real daemon on the veth rig (attached
//! natively, real HTTP backends and checks). Every test saves screenshots
//! under `target/console-screenshots/`. Needs root.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use dnslb_tests::{
    backend::HttpBackend,
    browser::{Browser, in_netns},
    daemon::{self, Answered, Daemon, ZoneFile, rig_a_records},
    netns::Rig,
};
use fantoccini::Locator;

/// A browser each, and checks timed to the second: the tests take turns
/// rather than share two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

const CONSOLE: &str = "127.0.0.1:8443";
const TOKEN: &str = "console-test-token";
const INTERVAL_MS: u64 = 100;
const TIMEOUT_MS: u64 = 50;
const FALL: u64 = 2;
/// A TSIG secret in a policy file the console edits.
const TSIG_SECRET: &str = "Y29uc29sZSB0ZXN0IHNlY3JldCwgbmV2ZXIgc2hvd24h";

fn url(fragment: &str) -> String {
    format!("http://{CONSOLE}/#/{fragment}")
}

fn token_file(test: &str) -> PathBuf {
    let file = std::env::temp_dir().join(format!("dnslb-console-{test}.token"));
    std::fs::write(&file, format!("{TOKEN}\n")).expect("token file");
    file
}

fn v4(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

/// `dnslb run` on the rig with `policy` and the console on [`CONSOLE`].
fn start(rig: &Rig, test: &str, policy: &Path) -> Daemon {
    let token = token_file(test);
    Daemon::start_on_rig(
        rig,
        &ZoneFile::example(),
        true,
        &[
            "--config",
            &policy.display().to_string(),
            "--console",
            CONSOLE,
            "--control-token-file",
            &token.display().to_string(),
        ],
    )
    .expect("dnslb starts")
}

const WEB_POLICY: &str = r#"
[check.web]
kind = "http"
path = "/health"
port = 8080
search = "OK"
interval = "100ms"
timeout = "50ms"
rise = 1
fall = 2

[pool.web]
check = "web"
endpoints = ["127.0.0.11", "127.0.0.12", "127.0.0.13"]

[pool.backup]
endpoints = ["127.0.0.14"]

[service.svc]
name = "svc.example.com."
ttl = 5
[service.svc.policy]
kind = "failover"
primary = { kind = "multivalue", pool = "web" }
secondary = { kind = "round_robin", pool = "backup" }
"#;

/// The endpoint node of `address` in the graph, as the page shows it.
fn endpoint_state(address: &str) -> String {
    format!(
        "(document.querySelector('#graph g.endpoint[data-address=\"{address}\"]') || {{}}).dataset"
    )
}

#[test]
fn the_service_page_draws_the_tree_follows_health_and_drains() {
    let _turn = take_turn();
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let mut backends: Vec<Option<HttpBackend>> = (11..=13)
        .map(|last| {
            let addr = SocketAddr::new(Ipv4Addr::new(127, 0, 0, last).into(), 8080);
            Some(HttpBackend::start(&rig.server, addr).expect("backend"))
        })
        .collect();
    let policy = daemon::policy_file("console", "graph", WEB_POLICY);
    let daemon = start(&rig, "graph", &policy);

    in_netns(&rig.server, async || {
        let browser = Browser::start(&rig.server, 1280, 860).await?;
        browser.sign_in(&url("service/svc"), TOKEN).await?;
        // name → failover → two pools → four endpoints.
        browser
            .until(
                "document.querySelectorAll('#graph g.node').length === 8",
                Duration::from_secs(10),
            )
            .await?;
        let kinds = browser
            .eval("[...document.querySelectorAll('#graph g.node')].map(n => n.dataset.kind)")
            .await?;
        assert_eq!(
            kinds,
            serde_json::json!([
                "name", "policy", "pool", "endpoint", "endpoint", "endpoint", "pool", "endpoint"
            ])
        );
        let labels = browser
            .eval("[...document.querySelectorAll('#graph g.node text')].map(t => t.textContent)")
            .await?;
        let labels = labels.to_string();
        for part in [
            "svc.example.com. A",
            "failover",
            "pool web",
            "pool backup",
            "127.0.0.12 · up",
            "127.0.0.14 · up",
        ] {
            assert!(labels.contains(part), "{part} in {labels}");
        }
        let edges = browser
            .eval("[...document.querySelectorAll('#graph .edge-label')].map(t => t.textContent)")
            .await?
            .to_string();
        assert!(
            edges.contains("primary") && edges.contains("secondary"),
            "{edges}"
        );
        browser.screenshot("service-graph").await?;

        // A backend stops: its endpoint turns red once the checks say so.
        // The verdict comes within fall × interval + timeout of the stop;
        // the console has 1 s after that.
        backends[1].take().expect("running").stop();
        let red = browser
            .until(
                &format!("{}.state === 'down'", endpoint_state("127.0.0.12")),
                Duration::from_secs(5),
            )
            .await?;
        let limit = Duration::from_millis(FALL * INTERVAL_MS + TIMEOUT_MS) + Duration::from_secs(1);
        assert!(red <= limit, "red after {red:?}, limit {limit:?}");
        println!("stopped backend drawn red after {red:?}");
        let fill = browser
            .eval("getComputedStyle(document.querySelector('#graph g.endpoint[data-address=\"127.0.0.12\"] rect')).fill")
            .await?;
        assert_eq!(fill, serde_json::json!("rgb(252, 232, 230)"), "drawn red");
        // `dnslb health` says why: nothing listens on the stopped port.
        let health = daemon.cli(&["health"]).map_err(anyhow::Error::msg)?;
        assert!(
            health.lines().any(|line| line.contains("127.0.0.12")
                && line.to_ascii_lowercase().contains("connection refused")),
            "{health}"
        );
        assert_eq!(
            rig_a_records(&rig.client, "svc.example.com."),
            vec![v4("127.0.0.11"), v4("127.0.0.13")]
        );

        // Drain 127.0.0.13 with its button, after the confirmation.
        let before = Answered::scrape(&rig)?;
        browser
            .click(Locator::Css("button.drain[data-address=\"127.0.0.13\"]"))
            .await
            .context("clicking Drain")?;
        let question = browser.wait_for(Locator::Id("confirm-text")).await?;
        assert!(question.text().await?.contains("Drain 127.0.0.13"));
        browser.confirm().await?;
        browser
            .until(
                &format!("{}.state === 'drained'", endpoint_state("127.0.0.13")),
                Duration::from_secs(2),
            )
            .await?;
        let result = browser.wait_for(Locator::Id("action-result")).await?;
        assert!(result.text().await?.contains("Drained 127.0.0.13"));
        for _ in 0..5 {
            assert_eq!(
                rig_a_records(&rig.client, "svc.example.com."),
                vec![v4("127.0.0.11")]
            );
        }
        let after = Answered::scrape(&rig)?;
        assert!(
            after.xdp.unwrap_or(0) >= before.xdp.unwrap_or(0) + 5,
            "the kernel answered: {before:?} → {after:?}"
        );
        assert_eq!(after.userspace, before.userspace, "not the daemon");
        browser.screenshot("service-drained").await?;

        // Undrain from the keyboard: focus the button, Enter, Enter.
        browser
            .client()
            .execute(
                "document.querySelector('button.undrain[data-address=\"127.0.0.13\"]').focus()",
                Vec::new(),
            )
            .await?;
        press_enter(&browser).await?;
        browser
            .until(
                "document.activeElement && document.activeElement.id === 'confirm-ok'",
                Duration::from_secs(2),
            )
            .await?;
        press_enter(&browser).await?;
        browser
            .until(
                &format!("{}.state === 'up'", endpoint_state("127.0.0.13")),
                Duration::from_secs(2),
            )
            .await?;

        // A weight, changed and confirmed, is drawn on the endpoint's edge.
        // Typed and clicked in one go: the page redraws its table on every
        // change event, and a redraw in between would replace the row.
        browser
            .client()
            .execute(
                "const row = document.querySelector('#endpoints tr[data-address=\"127.0.0.11\"]');
                 row.querySelector('input.weight').value = '7';
                 row.querySelector('button.set-weight').click();",
                Vec::new(),
            )
            .await?;
        browser.confirm().await?;
        browser
            .until(
                "[...document.querySelectorAll('#graph .edge-label')].some(t => t.textContent === 'weight 7')",
                Duration::from_secs(2),
            )
            .await?;
        // Nothing healthy left to answer with: 127.0.0.12 is down and every
        // other endpoint drained. The all-down rule answers the failed one
        // only, never a drained one, and the page says the service is
        // failing open, and why.
        let others = ["127.0.0.11", "127.0.0.13", "127.0.0.14"];
        for address in others {
            daemon
                .cli(&["endpoint", "drain", address])
                .map_err(anyhow::Error::msg)?;
        }
        browser
            .until(
                "document.getElementById('service-standing')",
                Duration::from_secs(5),
            )
            .await?;
        let standing = browser
            .eval("document.getElementById('service-standing').textContent")
            .await?
            .to_string();
        assert!(
            standing.contains("failing open")
                && standing.contains("no healthy endpoint: answering the failed ones"),
            "{standing}"
        );
        assert_eq!(
            rig_a_records(&rig.client, "svc.example.com."),
            vec![v4("127.0.0.12")]
        );
        browser.screenshot("service-failing-open").await?;
        for address in others {
            daemon
                .cli(&["endpoint", "undrain", address])
                .map_err(anyhow::Error::msg)?;
        }
        browser
            .until(
                "!document.getElementById('service-standing')",
                Duration::from_secs(5),
            )
            .await?;
        browser.close().await;
        anyhow::Ok(())
    })
    .expect("the console test");
    assert_eq!(
        rig_a_records(&rig.client, "svc.example.com."),
        vec![v4("127.0.0.11"), v4("127.0.0.13")]
    );
    let endpoints = daemon
        .cli(&["endpoint", "list"])
        .expect("dnslb endpoint list");
    assert!(
        endpoints
            .lines()
            .any(|line| line.contains("127.0.0.11") && line.contains('7')),
        "{endpoints}"
    );
    drop(daemon);
}

async fn press_enter(browser: &Browser) -> anyhow::Result<()> {
    let focused = browser.client().active_element().await?;
    focused.send_keys("\u{E007}").await?;
    Ok(())
}

fn geo_policy(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("geo.csv"),
        "network,continent,country,subdivision,latitude,longitude\n\
         198.18.0.0/24,EU,DE,,52.52,13.40\n\
         198.18.5.0/24,NA,US,,38.90,-77.04\n",
    )
    .unwrap();
    r#"
[geo]
csv = "geo.csv"

[pool.eu]
endpoints = ["127.0.0.21"]

[pool.us]
endpoints = ["127.0.0.22"]

[pool.elsewhere]
endpoints = ["127.0.0.23"]

[service.geo]
name = "geo.example.com."
ttl = 30
[service.geo.policy]
kind = "geolocation"
branches = [
  { continent = "EU", pool = "eu" },
  { country = "US", pool = "us" },
  { default = true, pool = "elsewhere" },
]
"#
    .to_owned()
}

async fn simulate(
    browser: &Browser,
    name: &str,
    client: &str,
    qtype: &str,
) -> anyhow::Result<(String, String, String)> {
    browser
        .client()
        .execute(
            "document.getElementById('sim-result').replaceChildren();
             document.getElementById('sim-name').value = arguments[0];
             document.getElementById('sim-client').value = arguments[1];
             document.getElementById('sim-qtype').value = arguments[2];",
            vec![name.into(), client.into(), qtype.into()],
        )
        .await?;
    browser
        .click(Locator::Css("#simulate button[type=submit]"))
        .await?;
    let by = browser.wait_for(Locator::Id("answered-by")).await?;
    let answers = browser.wait_for(Locator::Id("sim-answers")).await?;
    let branches = browser
        .eval("(document.getElementById('sim-branches') || {}).textContent || ''")
        .await?;
    Ok((
        by.text().await?,
        answers.text().await?,
        branches.as_str().unwrap_or_default().to_owned(),
    ))
}

#[test]
fn the_simulator_tells_two_client_networks_apart_and_says_who_answers() {
    let _turn = take_turn();
    let rig = Rig::new().expect("namespaces and veth");
    let dir = std::env::temp_dir().join("dnslb-console-geo");
    let policy = dir.join("dnslb.toml");
    std::fs::write(&policy, geo_policy(&dir)).unwrap();
    let daemon = start(&rig, "geo", &policy);

    in_netns(&rig.server, async || {
        let browser = Browser::start(&rig.server, 1280, 900).await?;
        browser.sign_in(&url("simulate"), TOKEN).await?;
        browser.wait_for(Locator::Id("sim-name")).await?;

        let (by, answers, branch) =
            simulate(&browser, "geo.example.com", "198.18.0.10", "A").await?;
        assert_eq!(by, "the kernel (XDP)");
        assert!(answers.contains("127.0.0.21"), "{answers}");
        assert_eq!(branch, "EU");
        // The path through the tree: name, policy, the EU pool, its endpoint.
        let on_path = browser
            .eval("[...document.querySelectorAll('#graph g.node.on-path')].map(n => n.querySelector('text').textContent)")
            .await?
            .to_string();
        assert!(
            on_path.contains("pool eu") && on_path.contains("127.0.0.21"),
            "{on_path}"
        );
        assert!(!on_path.contains("pool us"), "{on_path}");
        browser.screenshot("simulate-eu").await?;

        let (by, answers, branch) =
            simulate(&browser, "geo.example.com", "198.18.5.0/24", "A").await?;
        assert_eq!(by, "the kernel (XDP)");
        assert!(answers.contains("127.0.0.22"), "{answers}");
        assert_eq!(branch, "US");

        // A type the kernel does not answer goes to the daemon.
        let (by, answers, _) = simulate(&browser, "www.example.com", "198.18.0.10", "TXT").await?;
        assert_eq!(by, "the daemon");
        let why = browser.wait_for(Locator::Id("answered-why")).await?;
        assert!(why.text().await?.contains("A and AAAA only"), "{answers}");
        browser.close().await;
        anyhow::Ok(())
    })
    .expect("the console test");
    drop(daemon);
}

#[test]
fn a_broken_policy_edit_shows_its_line_and_changes_nothing_a_good_one_applies() {
    let _turn = take_turn();
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let dir = std::env::temp_dir().join("dnslb-console-edit");
    let policy = dir.join("dnslb.toml");
    // A TSIG secret written inline: the console never shows it, and an
    // edit applied from the console keeps it.
    let original = format!(
        "{}\n[tsig_key.transfer]\nsecret = \"{TSIG_SECRET}\"\n",
        geo_policy(&dir)
    );
    std::fs::write(&policy, &original).unwrap();
    let daemon = start(&rig, "edit", &policy);
    // A problem in a branch is reported on the branch's own line.
    let branch_line = original
        .lines()
        .position(|line| line.contains(r#"continent = "EU""#))
        .expect("the EU branch")
        + 1;

    in_netns(&rig.server, async || {
        let browser = Browser::start(&rig.server, 1280, 900).await?;
        browser.sign_in(&url("policy"), TOKEN).await?;
        browser
            .until(
                "document.getElementById('policy-text').value.includes('[service.geo]')",
                Duration::from_secs(10),
            )
            .await?;
        let shown = browser
            .eval("document.getElementById('policy-text').value")
            .await?
            .to_string();
        assert!(shown.contains(r#"secret = \"(set: hidden by dnslb)\""#), "{shown}");
        let page = browser
            .client()
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 fetch('/v1/policy', { headers:
                   { Authorization: 'Bearer ' + sessionStorage.getItem('dnslb-token') } })
                 .then(r => r.text()).then(body => done(document.documentElement.outerHTML + body));",
                Vec::new(),
            )
            .await?
            .to_string();
        assert!(!page.contains(TSIG_SECRET), "the secret is in the page or the API's answer");
        let edit = |from: &str, to: &str| {
            format!(
                "const t = document.getElementById('policy-text');
                 t.value = t.value.replace('{from}', '{to}');
                 t.dispatchEvent(new Event('input'));"
            )
        };
        browser
            .client()
            .execute(
                &edit(
                    r#"{ continent = \"EU\", pool = \"eu\" }"#,
                    r#"{ continent = \"EU\", pool = \"nope\" }"#,
                ),
                Vec::new(),
            )
            .await?;
        let problem = browser.wait_for(Locator::Css(".problem")).await?;
        let text = problem.text().await?;
        assert!(text.contains("no pool named `nope`"), "{text}");
        assert!(
            text.contains(&format!("dnslb.toml:{branch_line}")),
            "{text}"
        );
        assert_eq!(
            problem.attr("data-line").await?,
            Some(branch_line.to_string())
        );
        let diff = browser
            .wait_for(Locator::Id("policy-diff"))
            .await?
            .text()
            .await?;
        assert!(diff.contains(r#"+ "#) && diff.contains("nope"), "{diff}");
        assert_eq!(
            browser
                .eval("document.getElementById('policy-apply').disabled")
                .await?,
            serde_json::json!(true)
        );
        browser.screenshot("policy-error").await?;
        // Even a request that skips the page is refused whole.
        let refused = browser
            .client()
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 fetch('/v1/policy', { method: 'PUT', headers: { 'Content-Type': 'application/json',
                   Authorization: 'Bearer ' + sessionStorage.getItem('dnslb-token') },
                   body: JSON.stringify({ text: document.getElementById('policy-text').value }) })
                 .then(r => done(r.status));",
                Vec::new(),
            )
            .await?;
        assert_eq!(refused, serde_json::json!(400));
        assert_eq!(
            std::fs::read_to_string(&policy)?,
            original,
            "file unchanged"
        );
        assert_eq!(
            rig_a_records(&rig.client, "geo.example.com."),
            vec![v4("127.0.0.21")],
            "still served as before"
        );

        // A good edit: the EU branch answers from pool us. Apply, confirm.
        browser
            .client()
            .execute(
                &edit(
                    r#"{ continent = \"EU\", pool = \"nope\" }"#,
                    r#"{ continent = \"EU\", pool = \"us\" }"#,
                ),
                Vec::new(),
            )
            .await?;
        browser
            .until(
                "!document.getElementById('policy-apply').disabled",
                Duration::from_secs(5),
            )
            .await?;
        browser.click(Locator::Id("policy-apply")).await?;
        browser.confirm().await?;
        browser
            .until(
                "(document.getElementById('policy-result').textContent || '').includes('Applied')",
                Duration::from_secs(5),
            )
            .await?;
        browser.close().await;
        anyhow::Ok(())
    })
    .expect("the console test");
    let written = std::fs::read_to_string(&policy).unwrap();
    assert!(written.contains(r#"{ continent = "EU", pool = "us" }"#));
    assert!(
        written.contains(&format!("secret = \"{TSIG_SECRET}\"")),
        "the secret kept: {written}"
    );
    assert_eq!(
        rig_a_records(&rig.client, "geo.example.com."),
        vec![v4("127.0.0.22")],
        "the kernel answers from the applied policy"
    );
    drop(daemon);
}

/// 200 services, one check that fails, and a narrow screen.
fn many_services() -> String {
    let mut text = String::from(
        r#"
[check.web]
kind = "http"
path = "/health"
port = 8080
interval = "200ms"
timeout = "50ms"
rise = 1
fall = 1

[pool.web]
check = "web"
endpoints = ["127.0.0.31"]

[pool.dead]
check = "web"
endpoints = ["127.0.0.99"]
"#,
    );
    for n in 0..200 {
        let pool = if n == 7 { "dead" } else { "web" };
        text.push_str(&format!(
            "\n[service.svc-{n:03}]\nname = \"svc-{n:03}.example.com.\"\npolicy = {{ kind = \"multivalue\", pool = \"{pool}\" }}\n"
        ));
    }
    text
}

#[test]
fn the_overview_health_zones_and_200_services_read_well_on_a_narrow_screen() {
    let _turn = take_turn();
    let rig = Rig::new().expect("namespaces and veth");
    let _pass = rig.attach_client_pass_through().expect("pass-through");
    let _backend = HttpBackend::start(
        &rig.server,
        SocketAddr::new(Ipv4Addr::new(127, 0, 0, 31).into(), 8080),
    )
    .expect("backend");
    let policy = daemon::policy_file("console", "many", &many_services());
    let broken_zone = std::env::temp_dir().join("dnslb-console-broken.zone");
    std::fs::write(
        &broken_zone,
        "$ORIGIN broken.test.\n$TTL 300\n@ SOA ns hostmaster 1 7200 3600 1209600 300\n@ NS ns\nns A 198.18.0.2\nwww A 300.1.2.3\n",
    )
    .unwrap();
    let daemon = start(&rig, "many", &policy);
    // Traffic for the chart: answered in the kernel.
    for _ in 0..20 {
        rig_a_records(&rig.client, "svc-001.example.com.");
    }

    in_netns(&rig.server, async || {
        let browser = Browser::start(&rig.server, 1280, 1000).await?;
        browser.sign_in(&url("overview"), TOKEN).await?;
        // The overview is drawn anew every second: read it by query, not
        // through an element that the next refresh replaces.
        browser
            .until(
                "document.querySelector('#failing.alert') && \
                 document.querySelector('#failing.alert').textContent === '1 failing check: web on 127.0.0.99 (pool dead)'",
                Duration::from_secs(10),
            )
            .await?;
        // The chart draws once two ticks have given a rate.
        browser
            .until(
                "document.querySelector('#qps-chart polyline.kernel') && \
                 document.querySelector('#qps-chart polyline.kernel').getAttribute('points').split(' ').length >= 2",
                Duration::from_secs(10),
            )
            .await?;
        let maps = browser.eval("document.body.textContent.includes('Kernel maps')").await?;
        assert_eq!(maps, serde_json::json!(true));
        browser.screenshot("overview").await?;

        browser.client().goto(&url("health")).await?;
        browser
            .until(
                "document.querySelectorAll('#health tbody tr').length === 2 && \
                 document.querySelector('#health tbody tr').dataset.up === 'false' && \
                 document.querySelectorAll('#health svg.spark polyline')[1].getAttribute('points').split(' ').length >= 3",
                Duration::from_secs(5),
            )
            .await?;

        browser.client().goto(&url("zone/example.com.")).await?;
        browser.wait_for(Locator::Id("records")).await?;
        browser.type_into(Locator::Id("record-search"), "www").await?;
        browser
            .until(
                "[...document.querySelectorAll('#records tbody tr')].length > 0 && \
                 [...document.querySelectorAll('#records tbody tr')].every(tr => tr.textContent.includes('www'))",
                Duration::from_secs(5),
            )
            .await?;

        // A zone with a bad record: refused with its file and line.
        browser.client().goto(&url("zones")).await?;
        browser.wait_for(Locator::Id("zones")).await?;
        browser.type_into(Locator::Id("zone-origin"), "broken.test.").await?;
        browser.type_into(Locator::Id("zone-file"), &broken_zone.display().to_string()).await?;
        browser.click(Locator::Css("#load-zone button[type=submit]")).await?;
        browser.confirm().await?;
        let error = browser.wait_for(Locator::Css("#zone-result .error")).await?;
        let text = error.text().await?;
        assert!(
            text.contains(&format!("{}:6", broken_zone.display())),
            "file and line in: {text}"
        );

        // 200 services on a phone-sized screen: listed, filtered, and the
        // page never wider than the screen (tables scroll in their box).
        browser.client().set_window_size(390, 844).await?;
        browser.client().goto(&url("services")).await?;
        browser
            .until(
                "document.getElementById('service-count') && \
                 document.getElementById('service-count').textContent === '200 of 200 services'",
                Duration::from_secs(5),
            )
            .await?;
        browser
            .until(
                "document.documentElement.scrollWidth <= window.innerWidth",
                Duration::from_secs(2),
            )
            .await?;
        browser.screenshot("services-narrow").await?;
        browser.type_into(Locator::Id("service-filter"), "svc-199").await?;
        browser
            .until(
                "document.getElementById('service-count').textContent === '1 of 200 services'",
                Duration::from_secs(2),
            )
            .await?;
        browser.close().await;
        anyhow::Ok(())
    })
    .expect("the console test");
    assert!(
        !daemon
            .cli(&["zones"])
            .unwrap_or_default()
            .contains("broken.test"),
        "the refused zone is not served"
    );
}

/// The zone page of a zone dnslb signs: its key with its state and DS,
/// the signer's cache, and a KSK roll on the operator's click (the new key
/// shown with its CDS published).
#[test]
fn the_zone_page_shows_a_signed_zones_keys_and_rolls_its_ksk() {
    let _turn = take_turn();
    let rig = Rig::new().expect("namespaces and veth");
    let token = token_file("signed");
    let key_dir = std::env::temp_dir().join(format!("dnslb-console-keys-{}", std::process::id()));
    let daemon = Daemon::start_on_rig(
        &rig,
        &ZoneFile::example(),
        true,
        &[
            "--sign",
            "example.com",
            "--key-dir",
            &key_dir.display().to_string(),
            "--console",
            CONSOLE,
            "--control-token-file",
            &token.display().to_string(),
        ],
    )
    .expect("dnslb starts");
    in_netns(&rig.server, async || {
        let browser = Browser::start(&rig.server, 1280, 900).await?;
        browser.sign_in(&url("zone/example.com."), TOKEN).await?;
        browser
            .until(
                "document.querySelectorAll('#dnssec-keys tbody tr').length === 1 && \
                 document.querySelector('#dnssec-keys tbody tr').textContent.includes('CSK') && \
                 document.querySelector('#dnssec-keys tbody tr').textContent.includes('active') && \
                 document.getElementById('dnssec-signer') !== null",
                Duration::from_secs(5),
            )
            .await?;
        browser.click(Locator::Id("roll-ksk")).await?;
        browser.confirm().await?;
        browser
            .until(
                "document.querySelectorAll('#dnssec-keys tbody tr').length === 2 && \
                 [...document.querySelectorAll('#dnssec-keys tbody tr')].some(tr => tr.textContent.includes('CDS published'))",
                Duration::from_secs(5),
            )
            .await?;
        browser.screenshot("zone-dnssec").await?;
        browser.close().await;
        anyhow::Ok(())
    })
    .expect("the console test");
    let status = daemon.cli(&["dnssec", "status"]).expect("dnssec status");
    assert_eq!(status.matches("active").count(), 2, "{status}");
    assert!(status.contains("CDS published"), "{status}");
    drop(daemon);
    let _ = std::fs::remove_dir_all(&key_dir);
}

#[test]
fn the_console_needs_the_token_and_its_assets_come_from_the_daemon() {
    let _turn = take_turn();
    let rig = Rig::new().expect("namespaces and veth");
    let policy = daemon::policy_file("console", "token", WEB_POLICY);
    let daemon = start(&rig, "token", &policy);
    in_netns(&rig.server, async || {
        let browser = Browser::start(&rig.server, 1024, 768).await?;
        browser.sign_in(&url("overview"), "not-the-token").await?;
        // Read in the page, not through an element handle: the page
        // redraws the sign-in beside the error, which can leave a handle
        // taken just before stale.
        browser
            .until(
                "(document.querySelector('main .error') || {}).textContent?.includes('refused')",
                Duration::from_secs(5),
            )
            .await?;
        // Every resource the page fetched came from the daemon itself (the
        // favicon is an inline `data:` URL, fetched from nowhere).
        let origins = browser
            .eval("[...new Set(performance.getEntriesByType('resource').map(r => r.name).filter(n => !n.startsWith('data:')).map(n => new URL(n).origin))]")
            .await?;
        assert_eq!(origins, serde_json::json!([format!("http://{CONSOLE}")]));
        browser.close().await;
        anyhow::Ok(())
    })
    .expect("the console test");
    drop(daemon);
}

#[test]
fn the_service_page_draws_effective_weights_and_load() {
    let _turn = take_turn();
    let rig = Rig::new().expect("namespaces and veth");
    let policy = daemon::policy_file(
        "console",
        "load",
        r#"
[pool.web]
endpoints = ["127.0.0.11", "127.0.0.12"]
load = { source = "push", low = 0.3, high = 0.8, smoothing = 1.0 }

[service.svc]
name = "svc.example.com."
policy = { kind = "weighted", pool = "web" }
"#,
    );
    let daemon = start(&rig, "load", &policy);
    daemon
        .cli(&["endpoint", "load", "web", "127.0.0.12", "0.5"])
        .expect("a load pushed");

    in_netns(&rig.server, async || {
        let browser = Browser::start(&rig.server, 1280, 860).await?;
        browser.sign_in(&url("service/svc"), TOKEN).await?;
        browser
            .until(
                &format!(
                    "Math.abs(Number({}?.effectiveWeight) - 0.6) < 1e-9",
                    endpoint_state("127.0.0.12")
                ),
                Duration::from_secs(10),
            )
            .await?;
        let node = browser.eval(&endpoint_state("127.0.0.12")).await?;
        assert_eq!(node["load"], "0.5", "{node}");
        let labels = browser
            .eval(
                "[...document.querySelectorAll('#graph g.endpoint text')].map(t => t.textContent)",
            )
            .await?
            .to_string();
        assert!(labels.contains("effective 0.60 · load 0.50"), "{labels}");
        let table = browser
            .eval("document.querySelector('tr[data-address=\"127.0.0.12\"] .weighing').textContent")
            .await?
            .to_string();
        assert!(
            table.contains("effective weight 0.60, load 0.50")
                && table.contains("between the watermarks"),
            "{table}"
        );
        browser.screenshot("service-load").await?;
        Ok(())
    })
    .expect("the browser session");
}
