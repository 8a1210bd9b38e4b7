//! connect-chatd: a participant-side chat client for the Amazon Connect Participant
//! Service that keeps a chat connected and delivers every Item exactly once, plus a
//! faithful local emulator of the service.
//!
//! Modules, by concern: [`api`] (HTTP client and models), [`socket`] and [`frame`]
//! (websocket framing), [`supervisor`] (the session state machine), [`delivery`]
//! (exactly-once ordering), [`sink`] (where Items go), [`tail`] and [`demo`] (the
//! commands), [`emulator`] (the fake service), [`cli`], [`logging`] and [`exit`] (the
//! binary's edge), [`secret`], [`clock`] and [`tls`] (shared plumbing).

pub mod api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod delivery;
pub mod demo;
pub mod emulator;
pub mod exit;
pub mod frame;
pub mod journal;
pub mod logging;
pub mod secret;
pub mod sink;
pub mod socket;
pub mod store;
pub mod supervisor;
pub mod tail;
pub mod tls;
