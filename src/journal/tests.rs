//! Tests of the journal: files and permissions, durability across reopen, group commit
//! under concurrency and backpressure, de-duplication, cursors, reads, broadcast and
//! consumer positions.

use super::*;
use crate::api::model::ChatItemType;
use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

pub(super) fn msg(id: &str, time: &str) -> Item {
    Item {
        id: Some(id.into()),
        item_type: Some(ChatItemType::Message),
        absolute_time: Some(time.into()),
        content: Some(format!("text of {id}")),
        ..Default::default()
    }
}

fn typing(id: &str, time: &str) -> Item {
    Item {
        id: Some(id.into()),
        item_type: Some(ChatItemType::Typing),
        absolute_time: Some(time.into()),
        ..Default::default()
    }
}

pub(super) fn open(dir: &Path) -> Journal {
    Journal::open(dir, JournalSettings::default()).unwrap()
}

pub(super) fn record(name: &str, token: &str) -> SessionRecord {
    let mut r = SessionRecord::new(name, Secret::new(token), SessionSource::Api, History::All);
    r.labels.insert("team".into(), "blue".into());
    r.contact_id = Some(format!("contact-{name}"));
    r
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn files_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state").join("deeper");
    let j = open(&dir);
    j.append("s", vec![msg("a", "2026-01-01T00:00:00.000Z")])
        .await
        .unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(j.path(), dir.join(FILE_NAME));
    assert_eq!(mode(j.path()), 0o600);
    for suffix in ["-wal", "-shm"] {
        let side = dir.join(format!("{FILE_NAME}{suffix}"));
        assert_eq!(mode(&side), 0o600, "{suffix}");
    }
}

#[tokio::test]
async fn an_existing_directory_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
    let _j = open(tmp.path());
    assert_eq!(mode(tmp.path()), 0o750);
}

#[tokio::test]
async fn reopen_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let first_seq = {
        let j = open(tmp.path());
        j.put_session(&record("a", "tok-a")).await.unwrap();
        assert!(j
            .set_connection("a", &Secret::new("conn-a"), "2026-01-02T00:00:00.000Z")
            .await
            .unwrap());
        assert!(j.set_session_state("a", "connected", None, false).await.unwrap());
        let seqs = j
            .append(
                "a",
                vec![
                    msg("1", "2026-01-01T00:00:01.000Z"),
                    msg("2", "2026-01-01T00:00:02.000Z"),
                ],
            )
            .await
            .unwrap();
        j.set_position("stdout", seqs[1].unwrap()).await.unwrap();
        seqs[1].unwrap()
    };
    let j = open(tmp.path());
    let a = j.session("a").unwrap().unwrap();
    assert_eq!(a.participant_token.expose(), "tok-a");
    assert_eq!(a.connection_token.as_ref().map(Secret::expose), Some("conn-a"));
    assert_eq!(a.connection_expiry.as_deref(), Some("2026-01-02T00:00:00.000Z"));
    assert_eq!(a.state, "connected");
    assert_eq!(a.labels.get("team").map(String::as_str), Some("blue"));
    assert_eq!(a.contact_id.as_deref(), Some("contact-a"));
    assert_eq!(j.sessions().unwrap().len(), 1);
    assert_eq!(j.last_seq().unwrap(), Some(first_seq));
    assert_eq!(j.position("stdout").unwrap(), Some(first_seq));
    assert_eq!(j.cursor("a").unwrap().unwrap().id, "2");
    assert_eq!(j.entries_after(None, None, 10).unwrap().len(), 2);
    // Replaying after the restart adds nothing; new Items continue the sequence.
    let again = j
        .append("a", vec![msg("2", "2026-01-01T00:00:02.000Z"), msg("3", "x")])
        .await
        .unwrap();
    assert_eq!(again[0], None);
    assert!(again[1].unwrap() > first_seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_ordered_and_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let j = open(tmp.path());
    let mut tasks = Vec::new();
    for t in 0..8 {
        let j = j.clone();
        tasks.push(tokio::spawn(async move {
            let session = format!("s{}", t % 4);
            let mut mine = Vec::new();
            for b in 0..25 {
                let items = (0..4)
                    .map(|i| msg(&format!("t{t}-b{b}-i{i}"), "2026-01-01T00:00:00.000Z"))
                    .collect();
                let seqs = j.append(&session, items).await.unwrap();
                mine.extend(seqs.into_iter().map(Option::unwrap));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let mine = task.await.unwrap();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "a task's Items keep its order"
        );
        all.extend(mine);
    }
    assert_eq!(all.len(), 8 * 25 * 4);
    let entries = j.entries_after(None, None, 10_000).unwrap();
    assert_eq!(entries.len(), all.len());
    assert!(entries.windows(2).all(|w| w[0].seq < w[1].seq));
    let ids: HashSet<_> = entries.iter().map(|e| e.item_id.clone().unwrap()).collect();
    assert_eq!(ids.len(), all.len());
    let seqs: HashSet<_> = all.into_iter().collect();
    assert_eq!(seqs, entries.iter().map(|e| e.seq).collect());
}

#[tokio::test]
async fn always_commits_each_item() {
    let tmp = tempfile::tempdir().unwrap();
    let settings = JournalSettings {
        fsync: Fsync::Always,
        ..Default::default()
    };
    let j = Journal::open(tmp.path(), settings).unwrap();
    let seqs = j
        .append("s", vec![msg("a", "t"), msg("b", "t"), msg("a", "t")])
        .await
        .unwrap();
    assert!(seqs[0].unwrap() < seqs[1].unwrap());
    assert_eq!(seqs[2], None);
    j.set_position("c", 2).await.unwrap();
    assert_eq!(j.position("c").unwrap(), Some(2));
}

#[tokio::test]
async fn duplicates_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let j = open(tmp.path());
    let first = j.append("s", vec![msg("a", "t1"), msg("b", "t2")]).await.unwrap();
    assert!(first.iter().all(Option::is_some));
    let second = j
        .append("s", vec![msg("b", "t2"), msg("c", "t3"), msg("c", "t3")])
        .await
        .unwrap();
    assert_eq!(second[0], None);
    assert!(second[1].is_some());
    assert_eq!(second[2], None, "a repeat within one batch is skipped too");
    // The same Id in another session is another Item; Items without an Id always go in.
    assert!(j.append("other", vec![msg("a", "t1")]).await.unwrap()[0].is_some());
    let no_id = Item::default();
    let twice = j.append("s", vec![no_id.clone(), no_id]).await.unwrap();
    assert!(twice.iter().all(Option::is_some));
    assert_eq!(j.entries_after(None, Some("s"), 100).unwrap().len(), 5);
}

#[tokio::test]
async fn cursor_skips_ephemeral_items() {
    let tmp = tempfile::tempdir().unwrap();
    let j = open(tmp.path());
    assert_eq!(j.cursor("s").unwrap(), None);
    j.append("s", vec![typing("t0", "2026-01-01T00:00:00.000Z")])
        .await
        .unwrap();
    assert_eq!(j.cursor("s").unwrap(), None);
    j.append(
        "s",
        vec![
            msg("m1", "2026-01-01T00:00:01.000Z"),
            typing("t1", "2026-01-01T00:00:02.000Z"),
        ],
    )
    .await
    .unwrap();
    j.append("s", vec![Item::default()]).await.unwrap();
    j.append("other", vec![msg("m9", "2026-01-01T00:00:09.000Z")])
        .await
        .unwrap();
    let cursor = j.cursor("s").unwrap().unwrap();
    assert_eq!(cursor.id, "m1");
    assert_eq!(cursor.absolute_time.as_deref(), Some("2026-01-01T00:00:01.000Z"));
}

#[tokio::test]
async fn entries_after_with_and_without_a_session() {
    let tmp = tempfile::tempdir().unwrap();
    let j = open(tmp.path());
    let wire = Item::from_wire(r#"{"Type":"MESSAGE", "Id":"w","Unknown":{"x":1}}"#.into()).unwrap();
    j.append("a", vec![msg("a1", "t"), wire]).await.unwrap();
    j.append("b", vec![msg("b1", "t")]).await.unwrap();
    j.append("a", vec![msg("a2", "t")]).await.unwrap();
    let all = j.entries_after(None, None, 100).unwrap();
    let ids: Vec<_> = all.iter().map(|e| e.item_id.as_deref().unwrap()).collect();
    assert_eq!(ids, ["a1", "w", "b1", "a2"]);
    assert_eq!(
        &*all[1].json, r#"{"Type":"MESSAGE", "Id":"w","Unknown":{"x":1}}"#,
        "wire text kept"
    );
    let parsed: serde_json::Value = serde_json::from_str(&all[0].json).unwrap();
    assert_eq!(parsed["Id"], "a1");
    let after_first = j.entries_after(Some(all[0].seq), None, 2).unwrap();
    assert_eq!(after_first, all[1..3].to_vec());
    let a: Vec<_> = j.entries_after(Some(all[0].seq), Some("a"), 100).unwrap();
    assert_eq!(a, vec![all[1].clone(), all[3].clone()]);
    assert!(j.entries_after(Some(all[3].seq), None, 100).unwrap().is_empty());
    assert_eq!(j.seq_of("a", "a2").unwrap(), Some(all[3].seq));
    assert_eq!(j.seq_of("b", "a2").unwrap(), None);
    assert_eq!(j.last_seq().unwrap(), Some(all[3].seq));
}

#[tokio::test]
async fn broadcast_follows_commits_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let j = open(tmp.path());
    let mut rx = j.subscribe();
    j.append("a", vec![msg("1", "t"), msg("2", "t")]).await.unwrap();
    j.append("b", vec![msg("1", "t")]).await.unwrap();
    j.append("a", vec![msg("2", "t")]).await.unwrap(); // skipped: not broadcast
    j.append("a", vec![msg("3", "t")]).await.unwrap();
    let stored = j.entries_after(None, None, 100).unwrap();
    let mut got = Vec::new();
    for _ in 0..stored.len() {
        got.push((*rx.recv().await.unwrap()).clone());
    }
    assert_eq!(got, stored);
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn consumer_positions() {
    let tmp = tempfile::tempdir().unwrap();
    let j = open(tmp.path());
    assert_eq!(j.position("sse").unwrap(), None);
    j.set_position("sse", 5).await.unwrap();
    j.set_position("sse", 9).await.unwrap();
    j.set_position("webhook", 1).await.unwrap();
    assert_eq!(j.position("sse").unwrap(), Some(9));
    assert_eq!(j.position("webhook").unwrap(), Some(1));
}

#[test]
fn fsync_names() {
    let parse = |s: &str| serde_json::from_str::<Fsync>(&format!("\"{s}\"")).unwrap();
    assert_eq!(parse("always"), Fsync::Always);
    assert_eq!(parse("batch"), Fsync::Batch);
    assert_eq!(parse("never"), Fsync::Never);
    assert!(serde_json::from_str::<Fsync>("\"Always\"").is_err());
    assert_eq!(Fsync::default(), Fsync::Batch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_appends_share_one_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let j = open(tmp.path());
    // Another connection holds the write lock, so the writer's first transaction waits
    // (busy_timeout) while the other appends queue up behind it.
    let blocker = rusqlite::Connection::open(j.path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|t| {
            let j = j.clone();
            tokio::spawn(async move {
                j.append(&format!("s{t}"), vec![msg("a", "t"), msg("b", "t")])
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocker.execute_batch("COMMIT").unwrap();
    for task in tasks {
        assert!(task.await.unwrap().unwrap().iter().all(Option::is_some));
    }
    let stats = j.stats();
    assert_eq!((stats.appended, stats.skipped), (40, 0));
    assert!(stats.commits <= 2, "{stats:?}");
    j.append("s0", vec![msg("a", "t")]).await.unwrap();
    assert_eq!(j.stats().skipped, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_channel_waits_and_never_drops() {
    let tmp = tempfile::tempdir().unwrap();
    let j = open(tmp.path());
    let blocker = rusqlite::Connection::open(j.path()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let tasks: Vec<_> = (0..400)
        .map(|t| {
            let j = j.clone();
            tokio::spawn(async move { j.append("s", vec![msg(&format!("i{t}"), "t")]).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        tasks.iter().all(|t| !t.is_finished()),
        "nothing resolves before its commit"
    );
    blocker.execute_batch("COMMIT").unwrap();
    for task in tasks {
        assert!(task.await.unwrap().unwrap()[0].is_some());
    }
    assert_eq!(j.entries_after(None, None, 1000).unwrap().len(), 400);
}

/// An append that fails refuses the later appends of its chain, so a session with
/// several appends in flight never journals Items with a gap before them; a new chain
/// (and an append outside any chain) is not held to that failure.
#[tokio::test]
async fn a_failed_append_breaks_its_chain() {
    for fsync in [Fsync::Batch, Fsync::Always] {
        let tmp = tempfile::tempdir().unwrap();
        let settings = JournalSettings {
            fsync,
            ..JournalSettings::default()
        };
        let j = Journal::open(tmp.path(), settings).unwrap();
        // Injected from outside: an insert of the Item "boom" fails.
        rusqlite::Connection::open(j.path())
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER boom BEFORE INSERT ON items WHEN NEW.item_id = 'boom' \
                 BEGIN SELECT RAISE(ABORT, 'injected'); END;",
            )
            .unwrap();
        let session = "s";
        let chain = AppendChain::new();
        // A blocked writer, so all three wait in one group (batch) or one after another.
        let blocker = rusqlite::Connection::open(j.path()).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let (a, boom, c) = (
            j.enqueue_append(Some(&chain), session, vec![msg("a", "t1")])
                .await
                .unwrap(),
            j.enqueue_append(Some(&chain), session, vec![msg("boom", "t2")])
                .await
                .unwrap(),
            j.enqueue_append(Some(&chain), session, vec![msg("c", "t3")])
                .await
                .unwrap(),
        );
        blocker.execute_batch("COMMIT").unwrap();
        assert!(a.await.unwrap()[0].is_some());
        assert!(matches!(boom.await, Err(JournalError::Sqlite { .. })));
        let refused = c.await.unwrap_err();
        assert!(matches!(refused, JournalError::ChainBroken { .. }), "{refused}");
        assert!(
            refused.to_string().contains("later ones are refused"),
            "{refused}"
        );
        // Still refused later, in a group of its own.
        let again = j
            .enqueue_append(Some(&chain), session, vec![msg("d", "t4")])
            .await
            .unwrap();
        assert!(matches!(again.await, Err(JournalError::ChainBroken { .. })));
        let ids: Vec<_> = j
            .entries_after(None, Some(session), 100)
            .unwrap()
            .into_iter()
            .map(|e| e.item_id.unwrap())
            .collect();
        assert_eq!(ids, ["a"], "nothing after the failure");
        // A new chain, and a plain append, start clean.
        let fresh = AppendChain::new();
        j.enqueue_append(Some(&fresh), session, vec![msg("c", "t3")])
            .await
            .unwrap()
            .await
            .unwrap();
        j.append(session, vec![msg("d", "t4")]).await.unwrap();
        assert_eq!(j.entries_after(None, Some(session), 100).unwrap().len(), 3);
    }
}
