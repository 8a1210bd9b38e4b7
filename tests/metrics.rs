//! `/metrics` on the control API of an in-process daemon: the series are there, move
//! with what the emulator does, and name no session unless asked to. (The interop
//! suite parses the same exposition with Prometheus's own Python parser.) The series
//! are process-wide, so this file holds one test: nothing else in its process counts.

mod common;

use common::daemon::*;
use common::*;
use connect_chatd::daemon::run::ConfiguredSession;
use connect_chatd::emulator::{FaultSpec, Timing};
use connect_chatd::session::History;
use futures_util::StreamExt;
use std::time::Duration;

async fn scrape(d: &Running) -> String {
    let resp = d
        .http
        .get(d.url("/metrics"))
        .bearer_auth(BEARER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    resp.text().await.unwrap()
}

/// The value of the sample `series` (name with its labels, as written), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn until(d: &Running, what: &str, ok: impl Fn(&str) -> bool) -> String {
    for _ in 0..400 {
        let text = scrape(d).await;
        if ok(&text) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}:\n{}", scrape(d).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_sessions_and_the_faults() {
    let emu = emulator(Timing::default()).await;
    let chat = emu.create_chat("Metered");
    agent_says(&emu, &chat, "before");
    let dir = tempfile::tempdir().unwrap();
    let session = ConfiguredSession {
        name: "metered".into(),
        participant_token: chat.participant_token.clone(),
        history: History::All,
        labels: Default::default(),
        receipts: false,
    };
    let d = start_daemon(&emu, dir.path(), vec![session]).await;
    let text = until(&d, "the session live", |t| {
        value(t, "connect_chatd_sessions{state=\"live\"}") == Some(1.0)
    })
    .await;
    assert_eq!(
        value(&text, "connect_chatd_sessions{state=\"failed\"}"),
        Some(0.0)
    );
    assert!(
        value(
            &text,
            "connect_chatd_api_calls_total{operation=\"CreateParticipantConnection\",outcome=\"ok\"}"
        )
        .is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(value(&text, "connect_chatd_websocket_connect_seconds_count").is_some_and(|v| v >= 1.0));
    assert!(!text.contains("metered"), "no session name unless asked:\n{text}");
    assert!(!text.contains(chat.participant_token.expose()));

    // Items journalled, and an SSE reader that has read everything is not behind.
    for i in 0..5 {
        agent_says(&emu, &chat, &format!("m{i}"));
    }
    until(&d, "6 Items journalled", |t| {
        value(t, "connect_chatd_items_journalled_total").is_some_and(|v| v >= 6.0)
    })
    .await;
    let resp = d
        .http
        .get(d.url("/v1/sessions/metered/items?from=start"))
        .bearer_auth(BEARER)
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    while seen.matches("event: item").count() < 6 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("the stream sends")
            .unwrap()
            .unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let text = until(&d, "the stream caught up", |t| {
        value(t, "connect_chatd_consumer_lag_items{consumer=\"sse\"}") == Some(0.0)
            && value(t, "connect_chatd_sse_streams") == Some(1.0)
    })
    .await;
    assert!(value(&text, "connect_chatd_journal_size_bytes").is_some_and(|v| v > 0.0));
    drop(body);

    // A dropped socket and throttled, failing reconnects, each counted where it belongs.
    emu.inject_fault(FaultSpec::fail("CreateParticipantConnection", 429, 2));
    emu.inject_fault(FaultSpec::fail("CreateParticipantConnection", 503, 1));
    emu.drop_sockets(Some(&chat.participant_id));
    let calls = |t: &str, outcome: &str| {
        value(
            t,
            &format!("connect_chatd_api_calls_total{{operation=\"CreateParticipantConnection\",outcome=\"{outcome}\"}}"),
        )
        .unwrap_or(0.0)
    };
    // Live again means a new connection was made (the state still reads `live` for a
    // moment after the socket is lost).
    let text = until(&d, "live again after the faults", |t| {
        calls(t, "ok") >= 2.0 && value(t, "connect_chatd_sessions{state=\"live\"}") == Some(1.0)
    })
    .await;
    let reconnects = ["dropped", "server_close"]
        .iter()
        .filter_map(|c| value(&text, &format!("connect_chatd_reconnects_total{{cause=\"{c}\"}}")))
        .sum::<f64>();
    assert!(reconnects >= 1.0, "{text}");
    let calls = |outcome: &str| calls(&text, outcome);
    assert_eq!(calls("throttled"), 2.0, "{text}");
    assert_eq!(calls("server_error"), 1.0, "{text}");
    assert!(calls("ok") >= 2.0, "{text}");

    // Per-session series once the operator asks for them.
    d.daemon.set_metrics_per_session(true);
    let text = scrape(&d).await;
    assert_eq!(
        value(
            &text,
            "connect_chatd_session_not_live_seconds{session=\"metered\"}"
        ),
        Some(0.0),
        "{text}"
    );
    assert!(value(
        &text,
        "connect_chatd_session_last_item_age_seconds{session=\"metered\"}"
    )
    .is_some());
    d.stop().await;
}
