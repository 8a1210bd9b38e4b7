//! The daemon's configuration: a TOML file and the environment layer
//! (`CONNECT_CHATD_…`), merged over the defaults and validated as `connect-chatd run`
//! and `check-config` do. The input is the file, then optionally a line `%%env` and
//! `NAME=value` lines. Files the configuration names are looked up next to it: a
//! directory holding `token` (a ParticipantToken file) and `secret`.
#![no_main]
use connect_chatd::cli::config::{load, Overrides};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn dir() -> &'static (tempfile::TempDir, PathBuf) {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(d.path().join("token"), "pt-fuzz\n").unwrap();
        std::fs::write(d.path().join("secret"), "s3cret\n").unwrap();
        let path = d.path().join("connect-chatd.toml");
        (d, path)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (toml, env) = match text.split_once("\n%%env\n") {
        Some((t, e)) => (t, e),
        None => (text, ""),
    };
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (d, path) = dir();
    std::fs::write(path, toml).expect("the config file is written");
    // State and runtime directories stay inside the temporary directory.
    let mut vars = vec![
        (
            "STATE_DIRECTORY".to_string(),
            d.path().join("state").display().to_string(),
        ),
        ("RUNTIME_DIRECTORY".to_string(), d.path().display().to_string()),
    ];
    vars.extend(env);
    match load(path, &vars, &Overrides::default()) {
        Ok(config) => {
            let _ = config.summary();
            for s in &config.sessions {
                assert!(
                    connect_chatd::cli::config::valid_session_name(&s.name),
                    "{:?}",
                    s.name
                );
            }
        }
        Err(e) => {
            // Every refusal says what is wrong.
            assert!(!e.problems().is_empty(), "a ConfigError without a problem");
            let _ = e.to_string();
        }
    }
});
