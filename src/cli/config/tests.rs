//! Tests of loading: defaults, layering, resolution of paths, the example file.

use super::*;
use std::fs;
use tempfile::TempDir;

/// A temp dir holding `connect-chatd.toml` with `body`, and a token file `chat.token`.
pub(super) struct Setup {
    pub dir: TempDir,
    pub path: PathBuf,
}

impl Setup {
    pub fn new(body: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connect-chatd.toml");
        fs::write(&path, body).unwrap();
        fs::write(dir.path().join("chat.token"), "tok-123\n").unwrap();
        Setup { dir, path }
    }

    pub fn load(&self, env: &[(&str, &str)]) -> Result<DaemonConfig, ConfigError> {
        self.load_with(env, &Overrides::default())
    }

    pub fn load_with(&self, env: &[(&str, &str)], o: &Overrides) -> Result<DaemonConfig, ConfigError> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        load(&self.path, &env, o)
    }

    /// The error's text, asserting loading failed.
    pub fn err(&self, env: &[(&str, &str)]) -> String {
        match self.load(env) {
            Ok(c) => panic!("loaded, expected an error:\n{}", c.summary()),
            Err(e) => e.to_string(),
        }
    }

    pub fn file(&self) -> String {
        self.path.display().to_string()
    }
}

#[test]
fn defaults() {
    let s = Setup::new("region = \"us-east-1\"\n");
    let c = s.load(&[]).unwrap();
    assert_eq!(
        c.endpoint.base().as_str(),
        "https://participant.connect.us-east-1.amazonaws.com/"
    );
    assert_eq!(c.target.region.as_deref(), Some("us-east-1"));
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/connect-chatd"));
    assert_eq!(c.heartbeat_interval, Duration::from_secs(10));
    assert!(!c.stdout);
    assert_eq!(
        c.control.listen,
        ControlListen::Unix("/var/lib/connect-chatd/control.sock".into())
    );
    assert_eq!(c.control.token_file, None);
    assert!(!c.control.allow_remote);
    assert_eq!(c.http.listen, None);
    assert_eq!(c.journal.fsync, FsyncMode::Batch);
    assert_eq!(c.journal.retention, Duration::from_secs(7 * 86400));
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.level, "info");
    assert!(c.sessions.is_empty());
    let l = |op| c.limit(op).cloned().map(|l| (l.rate, l.burst));
    assert_eq!(l(Operation::CreateParticipantConnection), Some((6.0, 9)));
    assert_eq!(l(Operation::GetTranscript), Some((8.0, 12)));
    assert_eq!(l(Operation::SendMessage), Some((10.0, 15)));
    assert_eq!(l(Operation::SendEvent), Some((10.0, 15)));
    assert_eq!(l(Operation::DisconnectParticipant), Some((3.0, 5)));
    assert_eq!(l(Operation::GetAttachment), None);
    assert_eq!(c.limits["SendMessage"].bucket, SEND_BUCKET);
    assert_eq!(c.limits["SendEvent"].bucket, SEND_BUCKET);
    assert_eq!(c.limits["GetTranscript"].bucket, "GetTranscript");
}

#[test]
fn systemd_directories() {
    let s = Setup::new("region = \"us-east-1\"\n");
    let c = s
        .load(&[("STATE_DIRECTORY", "/var/lib/x"), ("RUNTIME_DIRECTORY", "/run/x")])
        .unwrap();
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/x"));
    assert_eq!(
        c.control.listen,
        ControlListen::Unix("/run/x/control.sock".into())
    );
    let c = s.load(&[("STATE_DIRECTORY", "/var/lib/y")]).unwrap();
    assert_eq!(
        c.control.listen,
        ControlListen::Unix("/var/lib/y/control.sock".into())
    );
}

#[test]
fn file_then_env_then_flags() {
    let s = Setup::new(
        r#"
region = "us-east-1"
state_dir = "/srv/file"
heartbeat_interval = 20
[log]
level = "warn"
format = "json"
[journal]
fsync = "always"
retention = 3600
[limits.GetTranscript]
rate = 4
"#,
    );
    let c = s.load(&[]).unwrap();
    assert_eq!(c.state_dir, PathBuf::from("/srv/file"));
    assert_eq!(c.heartbeat_interval, Duration::from_secs(20));
    assert_eq!(c.log.level, "warn");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.journal.fsync, FsyncMode::Always);
    assert_eq!(c.limits["GetTranscript"].rate, 4.0);
    assert_eq!(c.limits["GetTranscript"].burst, 12, "burst keeps its default");

    let env = [
        ("CONNECT_CHATD_STATE_DIR", "/srv/env"),
        ("CONNECT_CHATD_HEARTBEAT_INTERVAL", "1.5s"),
        ("CONNECT_CHATD_LOG_LEVEL", "debug"),
        ("CONNECT_CHATD_JOURNAL__FSYNC", "never"),
        ("CONNECT_CHATD_JOURNAL__RETENTION", "2h"),
        ("CONNECT_CHATD_LIMITS__GETTRANSCRIPT__BURST", "3"),
        ("CONNECT_CHATD_STDOUT", "true"),
        // Other commands' variables are ignored.
        ("CONNECT_CHATD_HISTORY", "none"),
        ("CONNECT_CHATD_PARTICIPANT_TOKEN_FILE", "/nope"),
        ("CONNECT_CHATD_EMULATOR_LISTEN", "x"),
        ("CONNECT_CHATD_CONNECT_PARTICIPANT", "true"),
    ];
    let c = s.load(&env).unwrap();
    assert_eq!(c.state_dir, PathBuf::from("/srv/env"));
    assert_eq!(c.heartbeat_interval, Duration::from_millis(1500));
    assert_eq!(c.log.level, "debug");
    assert_eq!(c.log.format, LogFormat::Json, "from the file");
    assert_eq!(c.journal.fsync, FsyncMode::Never);
    assert_eq!(c.journal.retention, Duration::from_secs(7200));
    assert_eq!(
        (c.limits["GetTranscript"].rate, c.limits["GetTranscript"].burst),
        (4.0, 3)
    );
    assert!(c.stdout);

    let flags = Overrides {
        state_dir: Some("/srv/flag".into()),
        log_level: Some("trace".into()),
        log_format: Some(LogFormat::Text),
        stdout: Some(false),
        control_listen: Some("unix:/tmp/flag.sock".into()),
        ..Overrides::default()
    };
    let c = s.load_with(&env, &flags).unwrap();
    assert_eq!(c.state_dir, PathBuf::from("/srv/flag"));
    assert_eq!(c.log.level, "trace");
    assert_eq!(c.log.format, LogFormat::Text);
    assert!(!c.stdout);
    assert_eq!(c.control.listen, ControlListen::Unix("/tmp/flag.sock".into()));
    assert_eq!(c.journal.fsync, FsyncMode::Never, "no flag: env stays");
}

#[test]
fn higher_layer_target_replaces_lower() {
    let s = Setup::new("region = \"us-east-1\"\nfips = true\n");
    let c = s
        .load(&[("CONNECT_CHATD_ENDPOINT", "http://127.0.0.1:8600")])
        .unwrap();
    assert_eq!(c.endpoint.base().as_str(), "http://127.0.0.1:8600/");
    assert_eq!(c.target.region, None);
    let flags = Overrides {
        region: Some("eu-west-2".into()),
        ..Overrides::default()
    };
    let c = s
        .load_with(&[("CONNECT_CHATD_ENDPOINT", "http://127.0.0.1:8600")], &flags)
        .unwrap();
    assert_eq!(
        c.endpoint.base().as_str(),
        "https://participant.connect-fips.eu-west-2.amazonaws.com/"
    );
    let s = Setup::new("region = \"us-east-1\"\ndual_stack = true\n");
    let c = s.load(&[]).unwrap();
    assert!(c.endpoint.base().as_str().ends_with(".api.aws/"));
}

#[test]
fn sessions_and_credentials_directory() {
    let s = Setup::new(
        r#"
endpoint = "http://localhost:8600"
[[sessions]]
participant_token_file = "chat.token"
[[sessions]]
name = "b.2_x-y"
participant_token_file = "cred.token"
history = "none"
labels = { queue = "vip" }
[[sessions]]
participant_token_file = "chat.token"
"#,
    );
    let creds = tempfile::tempdir().unwrap();
    fs::write(creds.path().join("cred.token"), "secret-token").unwrap();
    let cred_dir = creds.path().display().to_string();
    let c = s.load(&[("CREDENTIALS_DIRECTORY", &cred_dir)]).unwrap();
    let names: Vec<&str> = c.sessions.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["session-1", "b.2_x-y", "session-3"]);
    // Not in the credentials directory: next to the config file.
    assert_eq!(
        c.sessions[0].participant_token_file,
        s.dir.path().join("chat.token")
    );
    assert_eq!(
        c.sessions[1].participant_token_file,
        creds.path().join("cred.token")
    );
    assert_eq!(c.sessions[1].history, History::None);
    assert_eq!(c.sessions[0].history, History::All);
    assert_eq!(c.sessions[1].labels["queue"], "vip");
    let summary = c.summary();
    assert!(!summary.contains("secret-token"), "{summary}");
    assert!(summary.contains("session b.2_x-y: token file"), "{summary}");
}

#[test]
fn control_tcp_with_token() {
    let s = Setup::new(
        r#"
region = "us-east-1"
[control]
listen = "127.0.0.1:7001"
token_file = "chat.token"
[http]
listen = "localhost:9100"
"#,
    );
    let c = s.load(&[]).unwrap();
    assert_eq!(
        c.control.listen,
        ControlListen::Tcp("127.0.0.1:7001".parse().unwrap())
    );
    assert_eq!(c.control.token_file, Some(s.dir.path().join("chat.token")));
    assert_eq!(c.http.listen, Some("127.0.0.1:9100".parse().unwrap()));
    let remote = Overrides {
        control_listen: Some("tcp:0.0.0.0:7001".into()),
        ..Overrides::default()
    };
    let env = [("CONNECT_CHATD_CONTROL__ALLOW_REMOTE", "true")];
    let c = s.load_with(&env, &remote).unwrap();
    assert_eq!(
        c.control.listen,
        ControlListen::Tcp("0.0.0.0:7001".parse().unwrap())
    );
}

#[test]
fn example_file_loads() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/connect-chatd.toml");
    let creds = tempfile::tempdir().unwrap();
    fs::write(creds.path().join("chat-1.token"), "tok").unwrap();
    let env = vec![(
        "CREDENTIALS_DIRECTORY".to_string(),
        creds.path().display().to_string(),
    )];
    let c = load(&example, &env, &Overrides::default()).unwrap();
    let defaults = Setup::new("region = \"us-east-1\"\n").load(&[]).unwrap();
    // Every key in the example is at its default.
    assert_eq!(c.target, defaults.target);
    assert_eq!(c.endpoint, defaults.endpoint);
    assert_eq!(c.state_dir, defaults.state_dir);
    assert_eq!(c.heartbeat_interval, defaults.heartbeat_interval);
    assert_eq!(c.stdout, defaults.stdout);
    assert_eq!(c.control, defaults.control);
    assert_eq!(c.http, defaults.http);
    assert_eq!(c.journal, defaults.journal);
    assert_eq!(c.limits, defaults.limits);
    assert_eq!(c.log, defaults.log);
    assert_eq!(c.sessions.len(), 1);
    assert_eq!(c.sessions[0].name, "chat-1");
    assert_eq!(
        c.sessions[0].participant_token_file,
        creds.path().join("chat-1.token")
    );
    let summary = c.summary();
    for fact in [
        "endpoint: https://participant.connect.us-east-1.amazonaws.com/ (region us-east-1)",
        "state_dir: /var/lib/connect-chatd",
        "control.listen: unix:/var/lib/connect-chatd/control.sock",
        "journal.fsync: batch",
        "journal.retention: 7d",
        "limits.SendEvent: 10/s burst 15 (shared bucket SendMessage+SendEvent)",
        "limits.GetTranscript: 8/s burst 12",
        "session chat-1: token file ",
    ] {
        assert!(summary.contains(fact), "{fact:?} missing from:\n{summary}");
    }
    assert!(!summary.contains("tok\n"));
}

/// `[limits]` capacity keys: defaults, the file, the environment above it.
#[test]
fn capacity_keys() {
    let s = Setup::new("region = \"us-east-1\"\n");
    assert_eq!(s.load(&[]).unwrap().capacity, crate::daemon::Capacity::default());
    let s = Setup::new(
        r#"
region = "us-east-1"
[limits]
max_sessions = 50
max_body = 1048576
max_connections = 8
max_streams = 2
header_timeout = "3s"
idle_timeout = 20
[limits.GetTranscript]
rate = 4
"#,
    );
    let c = s.load(&[]).unwrap();
    let cap = &c.capacity;
    assert_eq!(
        (
            cap.max_sessions,
            cap.max_body,
            cap.max_connections,
            cap.max_streams
        ),
        (50, 1 << 20, 8, 2)
    );
    assert_eq!(cap.header_timeout, Duration::from_secs(3));
    assert_eq!(cap.idle_timeout, Duration::from_secs(20));
    assert_eq!(c.shutdown_timeout, Duration::from_secs(10), "the default");
    assert_eq!(c.limits["GetTranscript"].rate, 4.0, "operations sit beside them");
    let summary = c.summary();
    for line in [
        "limits.max_sessions: 50\n",
        "limits.header_timeout: 3s\n",
        "limits.idle_timeout: 20s\n",
    ] {
        assert!(summary.contains(line), "{line:?} in\n{summary}");
    }
    let env = [
        ("CONNECT_CHATD_SHUTDOWN_TIMEOUT", "3s"),
        ("CONNECT_CHATD_LIMITS__MAX_SESSIONS", "7"),
        ("CONNECT_CHATD_LIMITS__IDLE_TIMEOUT", "2m"),
    ];
    let c = s.load(&env).unwrap();
    assert_eq!(c.capacity.max_sessions, 7);
    assert_eq!(c.shutdown_timeout, Duration::from_secs(3));
    assert_eq!(c.capacity.idle_timeout, Duration::from_secs(120));
    assert_eq!(c.capacity.max_streams, 2, "the file's value stays");
}
