//! The web page in headless Chromium against the whole backend: the
//! operator signs in with their NATS user, the page renders, the live plot
//! updates, queries show stored rows, and a telecommand sent
//! from the page (with an id the page chose) reaches the device simulator,
//! whose answer the page shows (confirmed, refused).
//!
//! Needs Chromium (`apt-get install -y chromium`); without it the test
//! fails with that hint.

use std::time::Duration;

use backend_tests::browser::Browser;
use backend_tests::{Backend, auth};

#[test]
fn the_page_plots_live_telemetry_and_sends_a_telecommand() {
    // Fail early with the install hint, before starting anything.
    backend_tests::browser::chromium_bin();
    let backend = Backend::start_on(
        auth::server_options(),
        50,
        &backend_tests::SERVICES,
        auth::service_env(),
    );
    let mut browser = Browser::open(&format!("http://{}/", backend.web_addr));

    let title = browser.wait_for("document.title", "the page title", Duration::from_secs(20));
    assert_eq!(title, "Telestion example backend");
    sign_in(&mut browser, auth::OPERATOR);

    // The live plot draws frames, and keeps drawing newer ones.
    let first = browser.wait_for(
        "Number(document.getElementById('plot').dataset.pointsDrawn) > 0 \
         && Number(document.getElementById('plot').dataset.lastCounter)",
        "the plot draws telemetry",
        Duration::from_secs(20),
    );
    let first = first.as_u64().unwrap_or(0);
    browser.wait_for(
        &format!("Number(document.getElementById('plot').dataset.lastCounter) > {first} + 20"),
        "the plot draws newer frames",
        Duration::from_secs(20),
    );
    browser.wait_for(
        "document.getElementById('link').textContent === 'connected'",
        "the device link shown as connected",
        Duration::from_secs(20),
    );

    // Queries: the count and the table of the latest rows (refreshed every
    // 5 s, or on a click).
    browser.eval("document.getElementById('q-count').click(); document.getElementById('q-latest').click(); true");
    browser.wait_for(
        "Number(document.getElementById('count').dataset.rows) > 0",
        "the stored row count",
        Duration::from_secs(20),
    );
    browser.wait_for(
        "document.querySelectorAll('#latest-rows tbody tr').length === 10",
        "ten latest rows in the table",
        Duration::from_secs(20),
    );
    browser.eval("document.getElementById('q-series').click(); true");
    browser.wait_for(
        "Number(document.getElementById('series').dataset.points) > 0",
        "the series of the last minute",
        Duration::from_secs(20),
    );

    // A telecommand from the form reaches the device, which acknowledges it.
    let commands_before = backend.device_stat("commands");
    browser.eval(
        "document.getElementById('command-name').value = 'set_heater'; \
         document.getElementById('command-args').value = '{\"on\": true}'; \
         document.getElementById('command-send').click(); true",
    );
    let status = browser.wait_for(
        "['confirmed', 'refused', 'unconfirmed', 'error'].includes(document.getElementById('command-result').dataset.status) \
         && document.getElementById('command-result').textContent",
        "the telecommand's answer on the page",
        Duration::from_secs(20),
    );
    let status = status.as_str().unwrap_or_default().to_owned();
    assert!(status.starts_with("set_heater: confirmed"), "{status}");
    // The page chose the id, the command's idempotency key.
    assert!(status.contains("(id web-"), "{status}");
    assert_eq!(backend.device_stat("commands"), commands_before + 1);
    // The heater flag shows up in the telemetry the page draws.
    browser.wait_for(
        "document.getElementById('latest-frame').textContent.includes('status 0x')",
        "the newest frame on the page",
        Duration::from_secs(20),
    );

    // With the device's fault flag set, it rejects set_heater: the page
    // shows the rejection and the device's reason.
    backend.control("fault on");
    browser.eval(
        "document.getElementById('command-result').dataset.status = ''; \
         document.getElementById('command-send').click(); true",
    );
    let rejected = browser.wait_for(
        "['confirmed', 'refused', 'unconfirmed', 'error'].includes(document.getElementById('command-result').dataset.status) \
         && document.getElementById('command-result').textContent",
        "the device's rejection on the page",
        Duration::from_secs(20),
    );
    assert!(
        rejected
            .as_str()
            .unwrap_or_default()
            .starts_with("set_heater: refused"),
        "{rejected}"
    );
    backend.control("fault off");

    // A command the service refuses shows its reason.
    browser.eval(
        "document.getElementById('command-name').value = 'set_rate'; \
         document.getElementById('command-args').value = '{\"hz\": 0}'; \
         document.getElementById('command-send').click(); true",
    );
    let refused = browser.wait_for(
        "document.getElementById('command-result').dataset.status === 'error' \
         && document.getElementById('command-result').textContent",
        "the refusal on the page",
        Duration::from_secs(20),
    );
    assert!(
        refused.as_str().unwrap_or_default().contains("400"),
        "{refused}"
    );
}

/// Signs in with the page's form as `user`.
pub fn sign_in(browser: &mut Browser, (user, password): (&str, &str)) {
    browser.wait_for(
        "!document.getElementById('login-section').classList.contains('hidden')",
        "the sign-in form",
        Duration::from_secs(20),
    );
    browser.eval(&format!(
        "document.getElementById('login-user').value = {user:?}; \
         document.getElementById('login-password').value = {password:?}; \
         document.getElementById('login-send').click(); true"
    ));
    browser.wait_for(
        &format!("document.getElementById('user').textContent === {user:?}"),
        "signed in",
        Duration::from_secs(20),
    );
}
