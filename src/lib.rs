//! connect-chatd: a participant-side chat client for the Amazon Connect Participant
//! Service that keeps a chat connected and delivers every Item exactly once, plus a
//! faithful local emulator of the service.

pub mod api;
pub mod clock;
pub mod delivery;
pub mod emulator;
pub mod frame;
pub mod socket;
pub mod supervisor;
pub mod secret;
pub mod tls;
