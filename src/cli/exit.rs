//! The process's exit codes: a contract for scripts and for systemd.

use std::process::ExitCode;

/// The chat ended, a signal asked us to stop, or stdout was closed by its reader.
pub const OK: u8 = 0;
/// A runtime failure: a non-retryable service error (400, 404…), or an I/O error.
pub const FAILURE: u8 = 1;
/// The ParticipantToken was rejected (403 on the first CreateParticipantConnection).
/// Retrying cannot help; systemd units list it in `RestartPreventExitStatus`.
pub const TOKEN_REJECTED: u8 = 77;
/// Bad configuration or usage: a missing or invalid option, an unreadable token file.
pub const CONFIG: u8 = 78;

pub fn code(c: u8) -> ExitCode {
    ExitCode::from(c)
}
