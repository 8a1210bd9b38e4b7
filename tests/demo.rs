//! The demo (README command 1), run in-process on tokio's paused clock: the scripted
//! conversation, a forced drop and short ConnectionExpiry renewals, nothing lost.

use connect_chatd::cli::demo;

#[tokio::test(start_paused = true)]
async fn the_demo_conversation_loses_nothing() {
    let mut out = Vec::new();
    let summary = demo::run(1.0, &mut out).await.expect("the demo runs");
    let text = String::from_utf8(out).unwrap();
    assert_eq!((summary.lost, summary.duplicates), (0, 0), "{text}");
    assert!(
        summary.reconnects >= 1,
        "the forced drop was recovered: {summary:?}\n{text}"
    );
    assert!(
        summary.refreshes >= 1,
        "the short ConnectionExpiry was renewed: {summary:?}\n{text}"
    );
    for line in [
        "Ana (AGENT) joined",
        "Ana: Hi, I'm Ana. How can I help you today?",
        "You: My parcel hasn't arrived.",
        "Ana: I can see it left the depot this morning.",
        "Ana: It should reach you before 6pm.",
        "You: Great, thanks!",
        "── the chat has ended",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    let last = text.lines().last().unwrap();
    assert_eq!(last, summary.to_string());
    assert!(last.ends_with("lost 0, duplicates 0"));
    // The messages sent during the drop come in order, after the one before it.
    let before = text.find("Let me look it up").unwrap();
    let gap1 = text.find("left the depot").unwrap();
    let gap2 = text.find("before 6pm").unwrap();
    assert!(before < gap1 && gap1 < gap2);
}

/// The demo binary narrates the drop itself and writes no log records into the
/// rendered chat.
#[test]
fn the_demo_binary_keeps_log_records_out_of_the_chat() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_connect-chatd"))
        .args(["demo", "--pace", "0.1"])
        .env_remove("RUST_LOG")
        .env_remove("CONNECT_CHATD_LOG_LEVEL")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("· connection lost: reconnecting"), "{stdout}");
    assert!(stderr.trim().is_empty(), "log records in the demo: {stderr}");
    assert!(!stdout.contains("WARN"), "{stdout}");
}
