//! The CLI's client commands of a running daemon: `connect-chatd sessions
//! add|list|show|remove` (the control API's JSON answer on stdout) and `connect-chatd
//! stream [NAME]` (one JSON line per Item on stdout, as the SSE stream carries it).
//!
//! Exit codes: 0 on success, 1 when the daemon answers with an error (its JSON error
//! goes to stderr), 69 when the daemon cannot be reached, 78 for bad usage.

use super::control_client::{self, ClientError, Control};
use crate::cli::config::{ControlListen, Overrides};
use crate::cli::exit;
use crate::cli::{ControlArgs, HistoryArg, SessionsAction, SessionsArgs, StreamArgs};
use std::io::Write;

/// The daemon could not be reached (sysexits' EX_UNAVAILABLE).
pub const UNAVAILABLE: u8 = 69;

fn usage(message: impl std::fmt::Display) -> u8 {
    eprintln!("connect-chatd: {message}");
    exit::CONFIG
}

fn unreachable(e: ClientError) -> u8 {
    eprintln!("connect-chatd: {e}");
    match e {
        ClientError::Connect { .. } => UNAVAILABLE,
        ClientError::Http(_) => exit::FAILURE,
    }
}

/// Prints a 2xx body on stdout (0), anything else on stderr (1).
fn answer(status: u16, body: &[u8]) -> u8 {
    if (200..300).contains(&status) {
        if !body.is_empty() {
            let mut out = std::io::stdout();
            let _ = out.write_all(body);
            let _ = out.write_all(b"\n");
        }
        exit::OK
    } else {
        eprintln!(
            "connect-chatd: the daemon answered {status}: {}",
            String::from_utf8_lossy(body)
        );
        exit::FAILURE
    }
}

/// A path segment or query value, percent-encoded.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Where the control API is: `--control`, else `control.listen` of `--config` (with
/// `control.token_file` for TCP), else the first of `$RUNTIME_DIRECTORY/control.sock`,
/// `/run/connect-chatd/control.sock` and `/var/lib/connect-chatd/control.sock` that
/// exists.
pub fn control_of(args: &ControlArgs) -> Result<Control, u8> {
    let bearer_file = |file: Option<&std::path::Path>| -> Result<Option<crate::secret::Secret>, u8> {
        match file {
            Some(f) => super::run::read_secret("--control-token-file", f)
                .map(Some)
                .map_err(usage),
            None => Ok(None),
        }
    };
    if let Some(addr) = &args.control {
        let bearer = bearer_file(args.control_token_file.as_deref())?;
        return Control::parse(addr, bearer).map_err(|e| usage(format!("--control: {e}")));
    }
    if let Some(path) = &args.config {
        let cfg = crate::cli::config::load_from_process_env(path, &Overrides::default()).map_err(usage)?;
        return Ok(match cfg.control.listen {
            ControlListen::Unix(p) => Control::Unix(p),
            ControlListen::Tcp(addr) => {
                let file = args
                    .control_token_file
                    .as_deref()
                    .or(cfg.control.token_file.as_deref());
                Control::Tcp {
                    addr,
                    bearer: bearer_file(file)?,
                }
            }
        });
    }
    let mut candidates: Vec<std::path::PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("RUNTIME_DIRECTORY") {
        candidates.push(std::path::PathBuf::from(dir).join("control.sock"));
    }
    candidates.push("/run/connect-chatd/control.sock".into());
    candidates.push(std::path::Path::new(crate::cli::config::DEFAULT_STATE_DIR).join("control.sock"));
    let found = candidates.iter().find(|p| p.exists()).unwrap_or(&candidates[0]);
    Ok(Control::Unix(found.clone()))
}

pub async fn sessions(args: SessionsArgs) -> u8 {
    let control = match control_of(&args.control) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = match args.action {
        SessionsAction::Add {
            participant_token_file,
            name,
            history,
            labels,
            receipts,
        } => {
            let token = match crate::cli::config::read_secret(&participant_token_file) {
                Ok(t) => t.expose().to_string(),
                Err(e) => return usage(format!("--participant-token-file: {e}")),
            };
            let mut label_map = serde_json::Map::new();
            for l in labels {
                let Some((k, v)) = l.split_once('=') else {
                    return usage(format!("--label {l:?}: expected KEY=VALUE"));
                };
                label_map.insert(k.to_string(), v.into());
            }
            let mut body = serde_json::json!({
                "participant_token": token,
                "history": match history { HistoryArg::All => "all", HistoryArg::None => "none" },
                "labels": label_map,
                "receipts": receipts,
            });
            if let Some(n) = name {
                body["name"] = n.into();
            }
            control_client::call(&control, "POST", "/v1/sessions", Some(&body)).await
        }
        SessionsAction::List => control_client::call(&control, "GET", "/v1/sessions", None).await,
        SessionsAction::Show { name } => {
            control_client::call(&control, "GET", &format!("/v1/sessions/{}", encode(&name)), None).await
        }
        SessionsAction::Remove { name, disconnect } => {
            let q = if disconnect { "?disconnect=true" } else { "" };
            control_client::call(
                &control,
                "DELETE",
                &format!("/v1/sessions/{}{q}", encode(&name)),
                None,
            )
            .await
        }
    };
    match result {
        Ok((status, body)) => answer(status, &body),
        Err(e) => unreachable(e),
    }
}

pub async fn stream(args: StreamArgs) -> u8 {
    let control = match control_of(&args.control) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let base = match &args.name {
        Some(n) => format!("/v1/sessions/{}/items", encode(n)),
        None => "/v1/items".to_string(),
    };
    let query = match (&args.after, args.from_start) {
        (Some(id), _) => format!("?after={}", encode(id)),
        (None, true) => "?from=start".to_string(),
        (None, false) => String::new(),
    };
    let mut out = std::io::stdout();
    let result = control_client::stream(&control, &format!("{base}{query}"), |data| {
        // A closed stdout (`| head`) ends the stream quietly.
        out.write_all(data.as_bytes())
            .and_then(|_| out.write_all(b"\n"))
            .and_then(|_| out.flush())
            .is_ok()
    })
    .await;
    match result {
        Ok(None) => exit::OK,
        Ok(Some((status, body))) => answer(status, &body),
        Err(e) => unreachable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_are_encoded_for_urls() {
        assert_eq!(encode("chat-1.a_b"), "chat-1.a_b");
        assert_eq!(encode("cleo/4d3c 2b"), "cleo%2F4d3c%202b");
    }

    #[test]
    fn control_addresses() {
        assert!(matches!(
            Control::parse("unix:/run/x.sock", None),
            Ok(Control::Unix(_))
        ));
        assert!(matches!(
            Control::parse("/run/x.sock", None),
            Ok(Control::Unix(_))
        ));
        assert!(matches!(
            Control::parse("127.0.0.1:7070", None),
            Ok(Control::Tcp { .. })
        ));
        assert!(Control::parse("nowhere", None).is_err());
    }
}
