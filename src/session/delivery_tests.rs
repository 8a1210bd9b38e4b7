//! Delivery's tests: duplicates, the cursor, ephemeral Items, bounded Id memory.

use super::*;
use crate::api::model::ChatItemType;

fn item(id: &str, t: ChatItemType) -> Item {
    Item {
        id: Some(id.into()),
        item_type: Some(t),
        absolute_time: Some("2026-11-25T12:00:00.000Z".into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn duplicates_are_dropped_and_the_cursor_skips_ephemeral_items() {
    let (tx, mut rx) = mpsc::channel(10);
    let stats = Arc::new(SessionStats::default());
    let mut d = Delivery::new(tx, stats.clone());
    assert_eq!(
        d.offer(item("a", ChatItemType::Message), Source::Live).await,
        Ok(Offered::Delivered)
    );
    assert_eq!(
        d.offer(item("a", ChatItemType::Message), Source::Transcript)
            .await,
        Ok(Offered::Duplicate)
    );
    assert_eq!(
        d.offer(item("t", ChatItemType::Typing), Source::Live).await,
        Ok(Offered::Delivered)
    );
    assert_eq!(d.cursor().unwrap().id, "a");
    assert_eq!(
        d.offer(item("e", ChatItemType::ChatEnded), Source::Transcript)
            .await,
        Ok(Offered::Ended)
    );
    let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|i| i.id.unwrap())
        .collect();
    assert_eq!(got, ["a", "t", "e"]);
    let s = stats.snapshot();
    assert_eq!((s.delivered, s.duplicates, s.backfilled), (3, 1, 1));
    drop(rx);
    assert_eq!(
        d.offer(item("z", ChatItemType::Message), Source::Live).await,
        Err(ConsumerGone)
    );
}

fn timed(id: &str, ms: u32) -> Item {
    Item {
        id: Some(id.into()),
        item_type: Some(ChatItemType::Message),
        absolute_time: Some(format!(
            "2026-11-25T12:{:02}:{:02}.{:03}Z",
            ms / 60_000,
            ms / 1000 % 60,
            ms % 1000
        )),
        ..Default::default()
    }
}

/// The failure of issue 9: a backfill far longer than the Id memory, then the Items
/// a socket had queued meanwhile (all older than the cursor by then) offered again.
#[tokio::test]
async fn the_cursor_never_moves_back_even_when_the_id_memory_has_forgotten() {
    let (tx, mut rx) = mpsc::channel(100_000);
    let stats = Arc::new(SessionStats::default());
    let mut d = Delivery::with_memory(tx, stats.clone(), 8);
    // Live Items 0..100, then a backfill of 0..5000 (overlapping), then the socket's
    // queue 50..300 again, then a later backfill from 4990 on.
    let live: Vec<_> = (0..100).map(|i| timed(&format!("i{i}"), i * 3)).collect();
    let backfill: Vec<_> = (0..5000).map(|i| timed(&format!("i{i}"), i * 3)).collect();
    let queued: Vec<_> = (50..300).map(|i| timed(&format!("i{i}"), i * 3)).collect();
    let later: Vec<_> = (4990..5100).map(|i| timed(&format!("i{i}"), i * 3)).collect();
    let mut times = Vec::new();
    for (batch, source) in [
        (live, Source::Live),
        (backfill, Source::Transcript),
        (queued, Source::Live),
        (later, Source::Transcript),
    ] {
        for item in batch {
            d.offer(item, source).await.unwrap();
            let at = d.cursor().and_then(|c| c.absolute_time.clone()).unwrap();
            times.push(TimeKey::parse(&at).unwrap());
        }
    }
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "the cursor moved back");
    let got: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|i| i.id.unwrap())
        .collect();
    let want: Vec<String> = (0..5100).map(|i| format!("i{i}")).collect();
    assert_eq!(got, want, "each Item once, in order");
    assert_eq!(stats.snapshot().duplicates, 100 + 250 + 10);
    assert_eq!(d.cursor().unwrap().id, "i5099");
}

#[tokio::test]
async fn items_sharing_the_cursors_millisecond_are_told_apart_by_id() {
    let (tx, mut rx) = mpsc::channel(10);
    let mut d = Delivery::with_memory(tx, Arc::new(SessionStats::default()), 4);
    for id in ["a", "b", "a", "c", "b"] {
        d.offer(timed(id, 7), Source::Live).await.unwrap();
    }
    // No time at all: only the Id memory decides.
    let mut untimed = timed("u", 0);
    untimed.absolute_time = None;
    d.offer(untimed.clone(), Source::Live).await.unwrap();
    d.offer(untimed, Source::Live).await.unwrap();
    let got: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|i| i.id.unwrap())
        .collect();
    assert_eq!(got, ["a", "b", "c", "u"]);
}

#[tokio::test]
async fn ephemeral_items_do_not_move_the_time_rule() {
    let (tx, mut rx) = mpsc::channel(10);
    let mut d = Delivery::new(tx, Arc::new(SessionStats::default()));
    d.offer(timed("m1", 10), Source::Live).await.unwrap();
    let mut typing = timed("t", 50);
    typing.item_type = Some(ChatItemType::Typing);
    d.offer(typing, Source::Live).await.unwrap();
    // A message older than the typing indicator, newer than the cursor: delivered.
    assert_eq!(
        d.offer(timed("m2", 30), Source::Transcript).await,
        Ok(Offered::Delivered)
    );
    let mut late = timed("t2", 20);
    late.item_type = Some(ChatItemType::Typing);
    assert_eq!(
        d.offer(late, Source::Live).await,
        Ok(Offered::Duplicate),
        "older than the cursor"
    );
    let got: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|i| i.id.unwrap())
        .collect();
    assert_eq!(got, ["m1", "t", "m2"]);
}

#[test]
fn time_keys_order_like_the_timestamps_they_read() {
    use time::format_description::well_known::Rfc3339;
    for s in [
        "2026-11-25T12:00:00.123Z",
        "2026-11-25T12:00:00Z",
        "1999-02-28T23:59:59.999999999Z",
        "2000-02-29T00:00:00.5Z",
        "2026-01-01T00:00:00.001+00:00",
        "2026-11-25T13:00:00.123+01:00",
    ] {
        let want = time::OffsetDateTime::parse(s, &Rfc3339)
            .unwrap()
            .unix_timestamp_nanos();
        assert_eq!(TimeKey::parse(s), Some(TimeKey(want)), "{s}");
    }
    assert_eq!(
        TimeKey::parse("2026-11-25T12:00:00.123Z"),
        TimeKey::parse("2026-11-25T13:00:00.123+01:00")
    );
    for bad in [
        "",
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-11-25T12:00:00.Z",
        "2026-11-25T12:00:00",
    ] {
        assert_eq!(TimeKey::parse(bad), None, "{bad}");
    }
}

#[test]
fn recent_ids_are_bounded() {
    let mut r = RecentIds::new(3);
    for id in ["a", "b", "c", "d"] {
        assert!(r.insert(id));
    }
    assert!(!r.insert("d"));
    assert!(!r.contains("a") && r.contains("b") && r.contains("d"));
    assert_eq!(r.set.len(), 3);
}
