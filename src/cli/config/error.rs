//! Configuration errors. Every [`Problem`] names the key (a dotted path such as
//! `journal.fsync` or `sessions[2].name`) and where its value came from: the default,
//! the file, an environment variable or a flag. A [`ConfigError`] holds every problem
//! found; the process exits with [`crate::cli::exit::CONFIG`] (78).

use super::env::ENV_NAME;
use super::raw::{DEFAULTS_NAME, FLAGS_NAME};
use figment::error::Kind;
use figment::{Figment, Metadata, Profile};
use std::fmt;
use std::path::PathBuf;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// The configuration file.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
    /// A command-line flag, e.g. `--log-level`.
    Flag(String),
    /// Not set anywhere (a required key is missing).
    Unset,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "in {}", p.display()),
            Source::Env(v) => write!(f, "from environment variable {v}"),
            Source::Flag(flag) => write!(f, "from flag {flag}"),
            Source::Unset => f.write_str("not set"),
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `control.listen`, `limits.GetTranscript.rate`, `sessions[0].name`.
    pub key: String,
    pub source: Source,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, source: Source, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            source,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.source, self.message)
        } else {
            write!(f, "{} ({}): {}", self.key, self.source, self.message)
        }
    }
}

/// The configuration is unusable; exit code [`crate::cli::exit::CONFIG`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "invalid configuration: {one}"),
            many => {
                write!(f, "invalid configuration ({} problems):", many.len())?;
                for p in many {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl ConfigError {
    /// `problems` must not be empty.
    pub fn new(problems: Vec<Problem>) -> Self {
        debug_assert!(!problems.is_empty());
        ConfigError { problems }
    }

    pub fn single(key: impl Into<String>, source: Source, message: impl Into<String>) -> Self {
        Self::new(vec![Problem::new(key, source, message)])
    }

    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The process exit code for a configuration error (78).
    pub fn exit_code(&self) -> u8 {
        crate::cli::exit::CONFIG
    }

    /// The problems of a failed figment extraction (all of them, if figment chained several).
    pub(super) fn from_figment(err: figment::Error, figment: &Figment) -> Self {
        let problems = err.into_iter().map(|e| figment_problem(e, figment)).collect();
        ConfigError::new(problems)
    }

    /// The problems of a failed `figment.extract_inner(key)`, each under its full key
    /// (figment appends `key` to the path it found the error at).
    pub(super) fn from_figment_at(err: figment::Error, figment: &Figment, key: &str) -> Vec<Problem> {
        let prefix: Vec<String> = key
            .split('.')
            .filter(|k| !k.is_empty())
            .map(String::from)
            .collect();
        err.into_iter()
            .map(|mut e| {
                if e.path.ends_with(&prefix) {
                    e.path.truncate(e.path.len() - prefix.len());
                }
                e.path.splice(0..0, prefix.iter().cloned());
                figment_problem(e, figment)
            })
            .collect()
    }
}

/// Renders a figment path as `a.b[2].c`.
pub(super) fn key_path<S: AsRef<str>>(path: &[S]) -> String {
    let mut out = String::new();
    for seg in path {
        let seg = seg.as_ref();
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

fn figment_problem(e: figment::Error, figment: &Figment) -> Problem {
    let mut path = e.path.clone();
    let message = match &e.kind {
        Kind::UnknownField(field, expected) => {
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            if expected.is_empty() {
                "unknown key".to_string()
            } else {
                format!("unknown key; expected one of {}", expected.join(", "))
            }
        }
        Kind::UnknownVariant(v, expected) => {
            format!("{v:?} is not one of {}", expected.join(", "))
        }
        Kind::MissingField(field) => {
            if path.last().map(String::as_str) != Some(field.as_ref()) {
                path.push(field.to_string());
            }
            "required key is missing".to_string()
        }
        Kind::InvalidType(actual, expected) => format!("wrong type: found {actual}, expected {expected}"),
        other => other.to_string(),
    };
    // The value's own metadata is the most precise (a dict merged from several layers
    // carries the tag of the first); fall back to what figment attached to the error.
    let at = if matches!(e.kind, Kind::MissingField(_)) {
        &e.path
    } else {
        &path
    };
    let source = figment
        .find_metadata(&at.join("."))
        .filter(|_| !at.is_empty())
        .or(e.metadata.as_ref())
        .map(|md| source_of(md, &path))
        .unwrap_or(Source::Unset);
    Problem::new(key_path(&path), source, message)
}

/// The [`Source`] a value with metadata `md` at `path` came from.
pub(super) fn source_of<S: AsRef<str>>(md: &Metadata, path: &[S]) -> Source {
    if let Some(figment::Source::File(p)) = &md.source {
        return Source::File(p.clone());
    }
    let keys: Vec<&str> = path.iter().map(AsRef::as_ref).collect();
    match md.name.as_ref() {
        ENV_NAME => Source::Env(md.interpolate(&Profile::Default, &keys)),
        FLAGS_NAME => Source::Flag(md.interpolate(&Profile::Default, &keys)),
        DEFAULTS_NAME => Source::Default,
        _ => Source::Unset,
    }
}

/// Where the value at the dotted `key` came from (`Unset` if nowhere).
pub(super) fn lookup(figment: &Figment, key: &str) -> Source {
    match figment.find_metadata(key) {
        Some(md) => source_of(md, &key.split('.').collect::<Vec<_>>()),
        None => Source::Unset,
    }
}
