// Shared by the targets (included with `include!`, not a module of its own).

/// What every decoded Item must satisfy: what the session and the sinks derive from
/// it never panics, and it survives a round trip through its JSON form unchanged
/// (unknown fields are kept).
#[allow(dead_code)]
fn check_item(item: &connect_chatd::api::model::Item) {
    use connect_chatd::api::model::Item;
    use connect_chatd::session::delivery::TimeKey;
    let _ = item.is_chat_ended();
    let _ = item.is_ephemeral();
    let _ = item.absolute_time();
    if let Some(t) = item.absolute_time.as_deref() {
        // The hand-written fast path (`…Z`) and the time crate (any offset) agree
        // where both read a time.
        if let (Some(k), Some(parsed)) = (TimeKey::parse(t), item.absolute_time()) {
            let utc = parsed.to_offset(time::UtcOffset::UTC);
            let alt = utc
                .format(&time::format_description::well_known::Rfc3339)
                .expect("formats");
            let alt = format!("{}+00:00", alt.trim_end_matches('Z'));
            assert_eq!(Some(k), TimeKey::parse(&alt), "TimeKey of {t:?} and of {alt:?}");
        }
    }
    let text = serde_json::to_string(item).expect("an Item serialises");
    let again = Item::from_wire(text.into_boxed_str()).expect("a serialised Item decodes");
    assert_eq!(&again, item, "an Item changed in a round trip");
    if let Some(wire) = item.wire_json() {
        let from_wire = Item::from_wire(wire.into()).expect("its own wire text decodes");
        assert_eq!(&from_wire, item);
    }
}
