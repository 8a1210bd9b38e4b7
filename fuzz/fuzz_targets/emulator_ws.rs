//! The emulator's parsing of what a client sends on a websocket (subscribe, heartbeat,
//! ping, unsubscribe, anything else): every answer is a frame the client's decoder
//! reads.
#![no_main]
use connect_chatd::emulator::Offline;
use connect_chatd::socket::frame::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let emulator = Offline::new();
    if let Some(answer) = emulator.socket_frame(1, text) {
        decode(&answer).expect("the emulator answers with frames its client reads");
    }
});
