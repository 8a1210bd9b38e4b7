//! Tests of rejection: every message names the key and where the value came from.

use super::tests::Setup;
use super::*;

/// Asserts `err` mentions every piece.
fn has(err: &str, pieces: &[&str]) {
    for p in pieces {
        assert!(err.contains(p), "{p:?} missing from:\n{err}");
    }
}

const REGION: &str = "region = \"us-east-1\"\n";

#[test]
fn unknown_keys() {
    let s = Setup::new(&format!("{REGION}colour = \"red\"\n"));
    has(
        &s.err(&[]),
        &["invalid configuration: colour (in ", &s.file(), "unknown key"],
    );
    let s = Setup::new(&format!("{REGION}[journal]\nfsink = \"always\"\n"));
    has(
        &s.err(&[]),
        &[
            "journal.fsink (in ",
            &s.file(),
            "unknown key; expected one of fsync, retention",
        ],
    );
    let s = Setup::new(&format!(
        "{REGION}[[sessions]]\nparticipant_token_file = \"chat.token\"\ncolor = 1\n"
    ));
    has(&s.err(&[]), &["sessions[0].color (in ", &s.file(), "unknown key"]);
    let s = Setup::new(REGION);
    has(
        &s.err(&[("CONNECT_CHATD_COLOUR", "red")]),
        &[
            "colour (from environment variable CONNECT_CHATD_COLOUR)",
            "unknown configuration variable",
        ],
    );
    has(
        &s.err(&[("CONNECT_CHATD_SESSIONS", "x")]),
        &[
            "CONNECT_CHATD_SESSIONS",
            "sessions cannot come from the environment",
        ],
    );
}

#[test]
fn wrong_types() {
    let s = Setup::new(&format!("{REGION}stdout = \"yes\"\n"));
    has(
        &s.err(&[]),
        &[
            "stdout (in ",
            &s.file(),
            "wrong type: found string \"yes\", expected a boolean",
        ],
    );
    let s = Setup::new(REGION);
    has(
        &s.err(&[("CONNECT_CHATD_STDOUT", "yes")]),
        &[
            "stdout (from environment variable CONNECT_CHATD_STDOUT)",
            "expected a boolean",
        ],
    );
    has(
        &s.err(&[("CONNECT_CHATD_LIMITS__SENDEVENT__BURST", "-1")]),
        &["limits.SendEvent.burst (from environment variable CONNECT_CHATD_LIMITS__SENDEVENT__BURST)"],
    );
    let s = Setup::new("region = 5\n");
    has(&s.err(&[]), &["region (in ", "expected a string"]);
}

#[test]
fn bad_values() {
    let s = Setup::new(&format!("{REGION}[journal]\nfsync = \"sometimes\"\n"));
    has(
        &s.err(&[]),
        &[
            "journal.fsync (in ",
            &s.file(),
            "\"sometimes\" is not one of always, batch, never",
        ],
    );
    let s = Setup::new(REGION);
    has(
        &s.err(&[("CONNECT_CHATD_JOURNAL__FSYNC", "sometimes")]),
        &["journal.fsync (from environment variable CONNECT_CHATD_JOURNAL__FSYNC)"],
    );
    has(
        &s.err(&[("CONNECT_CHATD_HEARTBEAT_INTERVAL", "0")]),
        &[
            "heartbeat_interval (from environment variable CONNECT_CHATD_HEARTBEAT_INTERVAL)",
            "not a positive duration",
        ],
    );
    let s = Setup::new(&format!("{REGION}[journal]\nretention = \"1w\"\n"));
    has(
        &s.err(&[]),
        &["journal.retention (in ", "the unit must be ms, s, m, h or d"],
    );
    let s = Setup::new(&format!("{REGION}heartbeat_interval = -2\n"));
    has(
        &s.err(&[]),
        &["heartbeat_interval (in ", "not a positive number of seconds"],
    );
    let s = Setup::new(&format!("{REGION}[log]\nformat = \"xml\"\n"));
    has(&s.err(&[]), &["log.format (in ", "not one of text, json"]);
    let s = Setup::new(REGION);
    let flags = Overrides {
        log_level: Some("loud=?=".into()),
        ..Overrides::default()
    };
    let e = s.load_with(&[], &flags).unwrap_err().to_string();
    has(
        &e,
        &["log.level (from flag --log-level)", "not a log level or filter"],
    );
    let s = Setup::new("region = \"us-east-1\n");
    has(&s.err(&[]), &[&s.file(), "line 1"]);
}

#[test]
fn target_rejections() {
    let s = Setup::new("region = \"us-east-1\"\nendpoint = \"https://x.example\"\n");
    has(
        &s.err(&[]),
        &["endpoint (in ", "both region and endpoint are set"],
    );
    let s = Setup::new("fips = false\n");
    has(
        &s.err(&[]),
        &["region (not set): give region (with optional fips or dual_stack) or endpoint"],
    );
    let s = Setup::new("endpoint = \"http://10.0.0.1:8600\"\n");
    has(
        &s.err(&[]),
        &[
            "endpoint (in ",
            "plaintext http:// is only allowed for loopback hosts",
        ],
    );
    let s = Setup::new("region = \"US East\"\n");
    has(&s.err(&[]), &["region (in ", "invalid region"]);
    let s = Setup::new("region = \"us-east-1\"\nfips = true\ndual_stack = true\n");
    has(&s.err(&[]), &["dual_stack (in ", "cannot both be true"]);
    let s = Setup::new("endpoint = \"https://x.example\"\nfips = true\n");
    has(&s.err(&[]), &["fips (in ", "goes with region, not endpoint"]);
    let s = Setup::new(REGION);
    let flags = Overrides {
        endpoint: Some("http://example.com".into()),
        ..Overrides::default()
    };
    let e = s.load_with(&[], &flags).unwrap_err().to_string();
    has(&e, &["endpoint (from flag --endpoint)", "plaintext"]);
}

#[test]
fn control_rejections() {
    let s = Setup::new(&format!(
        "{REGION}[control]\nlisten = \"10.1.2.3:7001\"\ntoken_file = \"chat.token\"\n"
    ));
    has(
        &s.err(&[]),
        &[
            "control.listen (in ",
            "10.1.2.3:7001 is not a loopback address; set control.allow_remote = true",
        ],
    );
    let s = Setup::new(REGION);
    has(
        &s.err(&[("CONNECT_CHATD_CONTROL__LISTEN", "127.0.0.1:7001")]),
        &[
            "control.token_file (not set)",
            "CONNECT_CHATD_CONTROL__LISTEN",
            "give control.token_file",
        ],
    );
    has(
        &s.err(&[("CONNECT_CHATD_CONTROL__LISTEN", "somewhere")]),
        &[
            "control.listen (from environment variable CONNECT_CHATD_CONTROL__LISTEN)",
            "neither unix:PATH nor",
        ],
    );
    has(
        &s.err(&[
            ("CONNECT_CHATD_CONTROL__LISTEN", "[::1]:7001"),
            ("CONNECT_CHATD_CONTROL__TOKEN_FILE", "missing.token"),
        ]),
        &[
            "control.token_file (from environment variable CONNECT_CHATD_CONTROL__TOKEN_FILE)",
            "cannot read",
        ],
    );
    let s = Setup::new(&format!("{REGION}[http]\nlisten = \"nowhere\"\n"));
    has(&s.err(&[]), &["http.listen (in ", "not an IP:PORT address"]);
}

#[test]
fn limit_rejections() {
    let s = Setup::new(&format!("{REGION}[limits.Fly]\nrate = 1\nburst = 1\n"));
    has(
        &s.err(&[]),
        &[
            "limits.Fly (in ",
            "unknown operation \"Fly\"; expected one of CreateParticipantConnection",
        ],
    );
    let s = Setup::new(&format!("{REGION}[limits.GetTranscript]\nrate = 0\nburst = 0\n"));
    let e = s.err(&[]);
    has(
        &e,
        &[
            "2 problems",
            "limits.GetTranscript.rate (in ",
            "not a positive number",
            "limits.GetTranscript.burst (in ",
            "at least 1",
        ],
    );
    let s = Setup::new(&format!("{REGION}[limits.GetAttachment]\nrate = 2\n"));
    has(
        &s.err(&[]),
        &[
            "limits.GetAttachment.burst (in ",
            "no default limit: give both rate and burst",
        ],
    );
    let s = Setup::new(&format!(
        "{REGION}[limits.SendMessage]\nrate = 2\n[limits.SendEvent]\nrate = 3\n"
    ));
    has(&s.err(&[]), &["limits.SendEvent (in ", "share one bucket"]);
    let s = Setup::new(&format!(
        "{REGION}[limits.GetTranscript]\nrate = 1\nburst = 2\nspeed = 3\n"
    ));
    has(&s.err(&[]), &["limits.GetTranscript.speed (in ", "unknown key"]);
    // Either key sets the shared bucket.
    let s = Setup::new(&format!("{REGION}[limits.SendEvent]\nrate = 2\nburst = 4\n"));
    let c = s.load(&[]).unwrap();
    assert_eq!(
        (c.limits["SendMessage"].rate, c.limits["SendMessage"].burst),
        (2.0, 4)
    );
    let s = Setup::new(&format!(
        "{REGION}[limits.GetAttachment]\nrate = 0.5\nburst = 1\n"
    ));
    assert_eq!(s.load(&[]).unwrap().limits["GetAttachment"].rate, 0.5);
}

#[test]
fn session_rejections() {
    let sess =
        |name: &str| format!("[[sessions]]\nname = {name:?}\nparticipant_token_file = \"chat.token\"\n");
    let s = Setup::new(&format!("{REGION}{}{}", sess("ok"), sess("has space")));
    has(
        &s.err(&[]),
        &[
            "sessions[1].name (in ",
            &s.file(),
            "\"has space\" is not a session name",
        ],
    );
    let s = Setup::new(&format!("{REGION}{}", sess(&"x".repeat(65))));
    has(&s.err(&[]), &["sessions[0].name", "is not a session name"]);
    let s = Setup::new(&format!("{REGION}{}", sess("")));
    has(&s.err(&[]), &["sessions[0].name", "is not a session name"]);
    let s = Setup::new(&format!("{REGION}{}{}{}", sess("a"), sess("b"), sess("a")));
    has(
        &s.err(&[]),
        &[
            "sessions[2].name (in ",
            "duplicate session name \"a\": sessions[0] has it too",
        ],
    );
    let s = Setup::new(&format!(
        "{REGION}{}[[sessions]]\nparticipant_token_file = \"chat.token\"\n",
        sess("session-2")
    ));
    has(
        &s.err(&[]),
        &[
            "sessions[1].name",
            "duplicate session name \"session-2\" (generated",
        ],
    );
    let s = Setup::new(&format!(
        "{REGION}[[sessions]]\nparticipant_token_file = \"gone.token\"\n"
    ));
    has(
        &s.err(&[]),
        &[
            "sessions[0].participant_token_file (in ",
            "cannot read",
            "gone.token",
        ],
    );
    let s = Setup::new(&format!(
        "{REGION}[[sessions]]\nparticipant_token_file = \"empty.token\"\n"
    ));
    std::fs::write(s.dir.path().join("empty.token"), " \n").unwrap();
    has(&s.err(&[]), &["sessions[0].participant_token_file", "is empty"]);
    let s = Setup::new(&format!("{REGION}[[sessions]]\nname = \"a\"\n"));
    has(
        &s.err(&[]),
        &[
            "sessions[0].participant_token_file (in ",
            "required key is missing",
        ],
    );
    let s = Setup::new(&format!(
        "{REGION}[[sessions]]\nparticipant_token_file = \"chat.token\"\nhistory = \"some\"\n"
    ));
    has(&s.err(&[]), &["sessions[0].history (in ", "not one of all, none"]);
}

#[test]
fn all_problems_at_once() {
    let s = Setup::new(
        "endpoint = \"http://10.0.0.1\"\n[control]\nlisten = \"10.0.0.1:1\"\n[[sessions]]\nname = \"a b\"\nparticipant_token_file = \"gone\"\n",
    );
    let e = s.load(&[("CONNECT_CHATD_BOGUS", "1")]).unwrap_err();
    let keys: Vec<&str> = e.problems().iter().map(|p| p.key.as_str()).collect();
    for k in [
        "bogus",
        "endpoint",
        "control.listen",
        "control.token_file",
        "sessions[0].name",
        "sessions[0].participant_token_file",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    assert_eq!(e.exit_code(), crate::cli::exit::CONFIG);
}

#[test]
fn missing_config_file() {
    let e = load(
        Path::new("/nonexistent/connect-chatd.toml"),
        &[],
        &Overrides::default(),
    )
    .unwrap_err();
    has(
        &e.to_string(),
        &[
            "from flag --config",
            "cannot read the config file /nonexistent/connect-chatd.toml",
        ],
    );
}

#[test]
fn bad_capacity() {
    let s = Setup::new(&format!(
        "{REGION}[limits]\nmax_sessions = 0\nmax_streams = \"many\"\nidle_timeout = -1\n"
    ));
    has(
        &s.err(&[]),
        &[
            "limits.max_sessions (in ",
            "must be at least 1",
            "limits.max_streams (in ",
            "expected u64",
            "limits.idle_timeout (in ",
        ],
    );
    let s = Setup::new(REGION);
    has(
        &s.err(&[("CONNECT_CHATD_LIMITS__HEADER_TIMEOUT", "soon")]),
        &["limits.header_timeout (from environment variable CONNECT_CHATD_LIMITS__HEADER_TIMEOUT)"],
    );
    let s = Setup::new(&format!("{REGION}[limits]\nmax_sesions = 3\n"));
    has(
        &s.err(&[]),
        &["limits.max_sesions (in ", "max_sessions, max_body"],
    );
    let s = Setup::new(&format!(
        "{REGION}[limits]\nmax_sessions = 1\n[[sessions]]\nparticipant_token_file = \"chat.token\"\n\
         [[sessions]]\nparticipant_token_file = \"chat.token\"\n"
    ));
    has(
        &s.err(&[]),
        &[
            "limits.max_sessions (in ",
            "2 sessions are configured, more than the 1 allowed",
        ],
    );
}

#[test]
fn cluster_keys() {
    // key_file is required, and nats.
    let s = Setup::new(&format!("{REGION}[cluster]\ninstance = \"a b\"\n"));
    has(
        &s.err(&[]),
        &[
            "cluster.nats",
            "is required in [cluster]",
            "cluster.key_file",
            "cluster.instance (in ",
            "must be 1-64 characters",
        ],
    );
    // A key that is not 32 bytes, a subject without {session}, a short TTL.
    let s = Setup::new(&format!(
        "{REGION}[cluster]\nnats = \"nats://127.0.0.1:4222\"\nkey_file = \"cluster.key\"\nsubject = \"chats.{{contact_id}}\"\ninstance_ttl = 1\n"
    ));
    std::fs::write(s.dir.path().join("cluster.key"), "abcd\n").unwrap();
    has(
        &s.err(&[]),
        &[
            "cluster.key_file",
            "the key must be 32 bytes",
            "cluster.subject",
            "must contain {session}",
            "cluster.instance_ttl",
            "at least 3 seconds",
        ],
    );
    // A good one, from the file and the environment.
    std::fs::write(s.dir.path().join("cluster.key"), "ab".repeat(32)).unwrap();
    let cfg = s
        .load(&[
            ("CONNECT_CHATD_CLUSTER__SUBJECT", "chats.{session}"),
            ("CONNECT_CHATD_CLUSTER__INSTANCE_TTL", "6"),
            ("CONNECT_CHATD_CLUSTER__INSTANCE", "node-1"),
        ])
        .unwrap();
    let c = cfg.cluster.expect("[cluster] is on");
    assert_eq!(
        (c.instance.as_str(), c.subject.as_str(), c.instance_ttl.as_secs()),
        ("node-1", "chats.{session}", 6)
    );
    assert_eq!(
        (c.bucket.as_str(), c.stream.as_str()),
        ("connect-chatd-sessions", "CONNECT_CHATD")
    );
    assert!(
        !format!("{c:?}").contains(&"ab".repeat(32)),
        "the key never prints"
    );
}
