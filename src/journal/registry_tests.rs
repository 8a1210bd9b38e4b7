//! Tests of the sessions registry and of retention: records round-trip, the same token
//! is one session, `ended_at` is stamped once, tokens never print, and purge follows
//! the retention period.

use super::tests::{msg, open, record};
use super::*;
use std::time::Duration;

#[tokio::test]
async fn purge_follows_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let day = Duration::from_secs(24 * 3600);
    let settings = JournalSettings {
        retention: 7 * day,
        ..Default::default()
    };
    let j = Journal::open(tmp.path(), settings).unwrap();
    let now = OffsetDateTime::now_utc();
    let mut old = record("old", "tok-old");
    old.ended_at = Some(now - 10 * day);
    j.put_session(&old).await.unwrap();
    j.put_session(&record("live", "tok-live")).await.unwrap();
    j.put_session(&record("gone", "tok-gone")).await.unwrap();
    for s in ["old", "live", "gone", "recently-ended"] {
        j.append(s, vec![msg("1", "t"), msg("2", "t")]).await.unwrap();
    }
    j.put_session(&record("recently-ended", "tok-re")).await.unwrap();
    assert!(j
        .set_session_state("recently-ended", "ended", None, true)
        .await
        .unwrap());
    assert!(j.remove_session("gone").await.unwrap());
    assert!(!j.remove_session("gone").await.unwrap());

    assert_eq!(
        j.purge(now).await.unwrap(),
        2,
        "only the session that ended 10 days ago"
    );
    assert_eq!(j.session("old").unwrap(), None);
    assert!(j.entries_after(None, Some("old"), 10).unwrap().is_empty());
    assert_eq!(
        j.entries_after(None, Some("gone"), 10).unwrap().len(),
        2,
        "recent Items stay"
    );

    // Eight days on: the removed session's Items and the recently ended one go; the live one stays.
    assert_eq!(j.purge(now + 8 * day).await.unwrap(), 4);
    let left: Vec<_> = j.entries_after(None, None, 10).unwrap();
    assert!(left.iter().all(|e| e.session == "live") && left.len() == 2);
    let names: Vec<_> = j.sessions().unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["live"]);
    // Seqs are never reused after a purge.
    let last = left[1].seq;
    j.purge(now + 100 * day).await.unwrap();
    let next = j.append("new", vec![msg("x", "t")]).await.unwrap()[0].unwrap();
    assert!(next > last);
}

#[tokio::test]
async fn same_token_is_one_session() {
    let tmp = tempfile::tempdir().unwrap();
    let j = open(tmp.path());
    let token = Secret::new("tok-shared");
    let fp = fingerprint(&token);
    assert_eq!(fp.len(), 40);
    assert!(fp.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(j.session_by_fingerprint(&fp).unwrap(), None);
    let mut a = record("a", "tok-shared");
    j.put_session(&a).await.unwrap();
    assert_eq!(j.session_by_fingerprint(&fp).unwrap().unwrap().name, "a");
    let err = j.put_session(&record("b", "tok-shared")).await.unwrap_err();
    assert!(matches!(&err, JournalError::TokenInUse { existing, .. } if existing == "a"));
    assert!(!err.to_string().contains("tok-shared"));
    // Updating the same name is fine, and keeps created_at.
    a.state = "connected".into();
    a.created_at = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    j.put_session(&a).await.unwrap();
    let stored = j.session("a").unwrap().unwrap();
    assert_eq!(stored.state, "connected");
    assert!(stored.created_at < a.created_at);
    assert_eq!(j.sessions().unwrap().len(), 1);
}

#[tokio::test]
async fn ended_at_is_stamped_once() {
    let tmp = tempfile::tempdir().unwrap();
    let j = open(tmp.path());
    j.put_session(&record("a", "tok")).await.unwrap();
    assert!(j
        .set_session_state("a", "failed", Some("boom"), false)
        .await
        .unwrap());
    let r = j.session("a").unwrap().unwrap();
    assert_eq!(
        (r.state.as_str(), r.last_error.as_deref(), r.ended_at),
        ("failed", Some("boom"), None)
    );
    j.set_session_state("a", "ended", None, true).await.unwrap();
    let ended = j.session("a").unwrap().unwrap().ended_at.unwrap();
    j.set_session_state("a", "ended", None, true).await.unwrap();
    assert_eq!(j.session("a").unwrap().unwrap().ended_at, Some(ended));
    assert!(!j.set_session_state("nobody", "x", None, false).await.unwrap());
}

#[test]
fn debug_hides_tokens() {
    let mut r = record("a", "tok-participant-secret");
    r.connection_token = Some(Secret::new("tok-connection-secret"));
    let shown = format!("{r:?}");
    assert!(!shown.contains("tok-participant-secret"), "{shown}");
    assert!(!shown.contains("tok-connection-secret"), "{shown}");
    assert!(shown.contains("***"));
}
