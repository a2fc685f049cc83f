//! The web console in a real browser (headless Chromium over WebDriver)
//! against `pgvault up` and a private PostgreSQL source:
//!
//! - an Owner signs in, stores two secrets in the page, configures one
//!   database that is ready and one whose user lacks privileges (its row
//!   shows the grant script; run, then re-validated), backs up now and
//!   watches the job reach Completed without reloading, restores the point
//!   as a new database, finds the restore job on the dashboard; a POST
//!   without the session's CSRF token is refused; the pages work at phone
//!   width; sign-out ends the session;
//! - a BackupReader sees no action buttons, a forged POST gets the API's
//!   403, and an idle session expires.
//!
//! Every page is saved under `<target>/console-screenshots/`.

use std::time::Duration;

use pgvault_e2e::browser::Browser;
use pgvault_e2e::compare::assert_identical;
use pgvault_e2e::fixtures;
use pgvault_e2e::pgvault::PgvaultUp;
use pgvault_e2e::ports::start_on_free_ports;
use pgvault_e2e::process::wait_for_port;
use pgvault_localpg::TempCluster;

const ADMIN_PASSWORD: &str = "Src-console-Pw1";
const LOW_PASSWORD: &str = "L0w-console-Pw2";
const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// `pgvault up` with its console on a free loopback port; the console's URL.
async fn up_with_console(idle_timeout_seconds: u32) -> (PgvaultUp, String) {
    let idle = idle_timeout_seconds.to_string();
    let (up, port) = tokio::task::spawn_blocking(move || {
        start_on_free_ports(1, |ports| {
            let listen = format!("127.0.0.1:{}", ports[0]);
            let mut up = PgvaultUp::start_with_env(&[
                ("PGVAULT_COORDINATOR__CONSOLE_LISTEN", &listen),
                ("PGVAULT_COORDINATOR__CONSOLE_IDLE_TIMEOUT_SECONDS", &idle),
            ])?;
            wait_for_port(ports[0], Duration::from_secs(30), &mut up.process)?;
            Ok((up, ports[0]))
        })
    })
    .await
    .expect("join")
    .expect("pgvault up with its console listening");
    let url = format!("http://127.0.0.1:{port}/");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !up
        .process
        .log_text()
        .contains(&format!("web console  {url}"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "`pgvault up` prints the console's URL:\n{}",
            up.process.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (up, url)
}

/// Signs in through the form; lands on the overview.
async fn sign_in(browser: &Browser, console: &str, token: &str) {
    browser.goto(console).await.expect("open the console");
    browser.fill("#token", token).await.expect("type the token");
    browser.click("#sign-in").await.expect("sign in");
    browser
        .wait_for_text("h1", "Overview", Duration::from_secs(20))
        .await
        .expect("the overview after sign-in");
}

/// The session's CSRF token, as the page's sign-out form carries it.
async fn csrf(browser: &Browser) -> String {
    browser
        .run("return document.querySelector('input[name=csrf]').value")
        .await
        .expect("read the csrf field")
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// POSTs `form` to `path` from the page (as a script on another tab of the
/// same browser could); returns the status and the body.
async fn post_from_page(browser: &Browser, path: &str, form: &str) -> (u64, String) {
    let answer = browser
        .run(&format!(
            "return fetch({path:?}, {{method: 'POST', headers: {{'content-type': 'application/x-www-form-urlencoded'}}, body: {form:?}, redirect: 'manual'}})
               .then(r => r.text().then(t => [r.status, t]))"
        ))
        .await
        .expect("fetch");
    (
        answer[0].as_u64().unwrap_or_default(),
        answer[1].as_str().unwrap_or_default().to_string(),
    )
}

/// Waits until some session on `database` waits for a lock.
async fn wait_for_blocked_backup(source: &TempCluster, database: &str) {
    let client = source.connect("postgres").await.expect("connect");
    let blocked = pgvault_e2e::scenario::wait_for_lock_waiter(&client, database, JOB_TIMEOUT)
        .await
        .expect("pg_locks");
    assert!(blocked, "no backup blocked on {database}'s lock");
}

async fn wait_for_state(browser: &Browser, state: &str) -> String {
    browser
        .wait_for_text("#job-state", state, JOB_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("job never {state}: {e:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_configures_backs_up_and_restores_in_the_browser() {
    let source = TempCluster::start(ADMIN_PASSWORD).expect("source PostgreSQL");
    fixtures::pgbench(&source, "shop", 1).await.expect("shop");
    fixtures::create_database(&source, "inventory")
        .await
        .expect("inventory");
    let inventory = source.connect("inventory").await.expect("connect");
    inventory
        .batch_execute(&format!(
            "CREATE ROLE lowpriv LOGIN PASSWORD '{LOW_PASSWORD}';
             CREATE TABLE parts (id int PRIMARY KEY, name text);
             INSERT INTO parts SELECT i, 'part ' || i FROM generate_series(1, 100) i;"
        ))
        .await
        .expect("seed inventory");
    let (up, console) = up_with_console(1800).await;
    up.create_demo_vault("nightly", "mon", source.port());
    let browser = Browser::start("owner").await.expect("browser");

    // Sign in with the admin token.
    browser.goto(&console).await.unwrap();
    browser.screenshot("signin").await.unwrap();
    sign_in(&browser, &console, &up.token().unwrap()).await;
    browser.screenshot("overview-empty").await.unwrap();

    // Configure: store the secrets in the page, write-only.
    browser.click("a[href='/configure']").await.unwrap();
    for (id, value) in [
        (
            "src-admin",
            format!("user=postgres password={ADMIN_PASSWORD}"),
        ),
        ("low", format!("user=lowpriv password={LOW_PASSWORD}")),
    ] {
        browser.fill("#secret-id", id).await.unwrap();
        browser.fill("#secret-value", &value).await.unwrap();
        browser.click("#store-secret").await.unwrap();
        browser
            .wait_for_text("#secret-stored", id, Duration::from_secs(10))
            .await
            .unwrap();
        let page = browser
            .run("return document.documentElement.outerHTML")
            .await
            .unwrap();
        let page = page.as_str().unwrap_or_default();
        assert!(
            !page.contains(ADMIN_PASSWORD) && !page.contains(LOW_PASSWORD),
            "a stored secret is never shown back"
        );
    }
    browser.screenshot("configure-server").await.unwrap();

    // A ready database: server, secret, databases, policy, readiness.
    browser.select("#server", "servers/src").await.unwrap();
    browser
        .select("#secret", "secrets/src-admin")
        .await
        .unwrap();
    browser.click("#list-databases").await.unwrap();
    browser.click("#db-shop").await.unwrap();
    browser
        .select("#policy", "vaults/demo/policies/nightly")
        .await
        .unwrap();
    browser.click("#assign").await.unwrap();
    browser.screenshot("configure-databases").await.unwrap();
    browser.click("#configure").await.unwrap();
    browser
        .wait_for_text("#row-shop .readiness", "Success", Duration::from_secs(30))
        .await
        .unwrap();
    browser
        .screenshot("configure-readiness-success")
        .await
        .unwrap();
    let shop_href = browser
        .find("#row-shop a")
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .expect("the row links its instance");

    // A database whose user lacks privileges: failed, with its grant script.
    browser.goto(&format!("{console}configure")).await.unwrap();
    browser.select("#server", "servers/src").await.unwrap();
    browser.select("#secret", "secrets/low").await.unwrap();
    browser.click("#list-databases").await.unwrap();
    browser.click("#db-inventory").await.unwrap();
    browser
        .select("#policy", "vaults/demo/policies/nightly")
        .await
        .unwrap();
    browser.click("#assign").await.unwrap();
    browser.click("#configure").await.unwrap();
    let row = browser
        .wait_for_text(
            "#row-inventory",
            "UserErrorMissingDBPermissions",
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(row.contains("Failed validation"), "{row}");
    let sql = browser.text("#row-inventory pre").await.unwrap();
    assert!(
        sql.contains("GRANT"),
        "the row shows its grant script: {sql}"
    );
    browser
        .screenshot("configure-readiness-missing-privileges")
        .await
        .unwrap();
    // The DBA runs the script, then re-validates from the page.
    inventory
        .batch_execute(&sql)
        .await
        .expect("run the grant script");
    browser
        .click("#row-inventory button.revalidate")
        .await
        .unwrap();
    browser
        .wait_for_text(
            "#row-inventory .readiness",
            "Success",
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    browser.screenshot("configure-revalidated").await.unwrap();

    // Back up now and watch the job complete without reloading the page.
    browser
        .goto(&format!("{}{}", console.trim_end_matches('/'), shop_href))
        .await
        .unwrap();
    browser.screenshot("instance-before-backup").await.unwrap();
    // A lock holds the backup inside its dump until the page is watching.
    let holder = source.connect("shop").await.expect("connect");
    holder
        .batch_execute("BEGIN; LOCK TABLE pgbench_accounts IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("hold a lock");
    browser
        .select("#backup-rule", "RETENTION_RULE_KIND_DEFAULT")
        .await
        .unwrap();
    browser.click("#backup-now").await.unwrap();
    browser.find("#job-state").await.unwrap();
    browser
        .run("window.pgvaultNotReloaded = true; return true")
        .await
        .unwrap();
    wait_for_state(&browser, "In progress").await;
    wait_for_blocked_backup(&source, "shop").await;
    browser.screenshot("job-running").await.unwrap();
    holder
        .batch_execute("COMMIT")
        .await
        .expect("release the lock");
    wait_for_state(&browser, "Completed").await;
    let kept = browser
        .run("return window.pgvaultNotReloaded === true")
        .await
        .unwrap();
    assert_eq!(
        kept,
        serde_json::Value::Bool(true),
        "the page was not reloaded"
    );
    let tables = browser.text("#tables-table").await.unwrap();
    assert!(tables.contains("pgbench_accounts"), "{tables}");
    browser.screenshot("job-completed").await.unwrap();

    // CSRF: a POST without the session's token, or with a stale one, is refused.
    let backup = format!("{shop_href}/backup");
    let (status, body) =
        post_from_page(&browser, &backup, "rule=RETENTION_RULE_KIND_DEFAULT").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    let stale = "0".repeat(64);
    let (status, _) = post_from_page(&browser, &backup, &format!("csrf={stale}")).await;
    assert_eq!(status, 403);

    // Restore the point as a new database and follow the restore job.
    browser
        .goto(&format!("{}{}", console.trim_end_matches('/'), shop_href))
        .await
        .unwrap();
    browser.screenshot("instance-with-point").await.unwrap();
    browser.click("a.restore-link").await.unwrap();
    browser
        .fill("#target-database", "shop_restored")
        .await
        .unwrap();
    browser.screenshot("restore").await.unwrap();
    browser.click("#restore-database").await.unwrap();
    browser.find("#job-state").await.unwrap();
    wait_for_state(&browser, "Completed").await;
    browser.screenshot("restore-job").await.unwrap();
    assert_identical(&source, "shop", &source, "shop_restored")
        .await
        .expect("the restored database equals the source");

    // The dashboard finds the restore job.
    browser
        .goto(&format!("{console}jobs?operation=OPERATION_RESTORE"))
        .await
        .unwrap();
    let jobs = browser.text("#jobs-table").await.unwrap();
    assert!(
        jobs.contains("Restore") && jobs.contains("Completed"),
        "{jobs}"
    );
    browser.screenshot("jobs-restores").await.unwrap();
    browser.goto(&format!("{console}jobs")).await.unwrap();
    browser.screenshot("jobs").await.unwrap();
    browser.goto(&format!("{console}overview")).await.unwrap();
    let overview = browser.text("#instances-table").await.unwrap();
    assert!(
        overview.contains("shop on src") && overview.contains("Completed"),
        "{overview}"
    );
    browser.screenshot("overview").await.unwrap();

    // Phone width: the page fits, wide tables scroll inside their frame.
    browser.client().set_window_size(390, 844).await.unwrap();
    let overflow = browser
        .run("return document.documentElement.scrollWidth - window.innerWidth")
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap_or(999) <= 1,
        "page wider than the phone: {overflow}"
    );
    browser.screenshot("overview-phone").await.unwrap();
    browser.client().set_window_size(1280, 900).await.unwrap();

    // Sign out: back to the form, and the old session is gone.
    browser.click("#sign-out").await.unwrap();
    browser
        .wait_for_text("#signin-notice", "signed out", Duration::from_secs(10))
        .await
        .unwrap();
    browser.goto(&format!("{console}overview")).await.unwrap();
    assert!(
        browser.exists("#token").await.unwrap(),
        "signed out means signed out"
    );
    browser.close().await.unwrap();
    let logs = up.process.log_text();
    assert!(!logs.contains(ADMIN_PASSWORD) && !logs.contains(LOW_PASSWORD));
    assert!(
        !logs.contains(&up.token().unwrap()),
        "the token is never logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_sees_no_actions_is_refused_a_forged_post_and_its_idle_session_expires() {
    let source = TempCluster::start(ADMIN_PASSWORD).expect("source PostgreSQL");
    fixtures::create_database(&source, "shop")
        .await
        .expect("shop");
    // Long enough that a slow browser on a busy machine keeps the session
    // between its own requests; short enough to wait out below.
    let (up, console) = up_with_console(15).await;
    up.create_demo_vault("nightly", "mon", source.port());
    let instance = up.protect_demo_database("nightly", ADMIN_PASSWORD, "shop");
    let created = up
        .cli(
            &[
                "token",
                "create",
                "auditor",
                "--role",
                "BackupReader",
                "--output",
                "json",
            ],
            None,
        )
        .expect("token create");
    let created: serde_json::Value =
        serde_json::from_slice(&created.stdout).expect("token create prints JSON");
    let reader = created["secret"].as_str().expect("a token").to_string();

    let browser = Browser::start("reader").await.expect("browser");
    sign_in(&browser, &console, &reader).await;
    assert_eq!(browser.text("#signed-in-as").await.unwrap(), "auditor");
    let (vault, id) = instance
        .strip_prefix("vaults/")
        .and_then(|rest| rest.split_once("/backupInstances/"))
        .expect("an instance name");
    let page = format!("{console}vaults/{vault}/instances/{id}");
    browser.goto(&page).await.unwrap();
    browser.find("#instance-facts").await.unwrap();
    for action in [
        "#backup-now",
        "#stop-protection",
        "#resume-protection",
        "#revalidate",
    ] {
        assert!(
            !browser.exists(action).await.unwrap(),
            "a reader sees {action}"
        );
    }
    browser.screenshot("instance").await.unwrap();

    // A forged form with the session's own CSRF token still meets the API.
    let token = csrf(&browser).await;
    let path = format!("/vaults/{vault}/instances/{id}/backup");
    let (status, body) = post_from_page(
        &browser,
        &path,
        &format!("rule=RETENTION_RULE_KIND_DEFAULT&csrf={token}"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("may not call BackupNow"), "{body}");
    browser.goto(&format!("{console}configure")).await.unwrap();
    browser.find("#configure-denied").await.unwrap();
    browser.screenshot("configure-denied").await.unwrap();

    // Idle past the timeout: the next page asks to sign in again.
    tokio::time::sleep(Duration::from_secs(16)).await;
    browser.goto(&format!("{console}overview")).await.unwrap();
    browser
        .wait_for_text(
            "#signin-notice",
            "session has ended",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    browser.screenshot("expired").await.unwrap();
    browser.close().await.unwrap();
    assert!(
        !up.process.log_text().contains(&reader),
        "the token is never logged"
    );
}
