//! The environment layer. `CONNECT_CHATD_<KEY>` sets a top-level key and
//! `CONNECT_CHATD_<SECTION>__<KEY>` a nested one (`CONNECT_CHATD_CONTROL__LISTEN`,
//! `CONNECT_CHATD_LIMITS__GETTRANSCRIPT__RATE`; operation names match case-insensitively).
//! `CONNECT_CHATD_LOG_LEVEL`/`CONNECT_CHATD_LOG_FORMAT` (the names `tail` uses) are
//! aliases of `log.level`/`log.format`; the `__` forms win when both are set. Variables
//! of other commands (`PARTICIPANT_TOKEN_FILE`, `HISTORY`, `CONNECT_PARTICIPANT`,
//! `EMULATOR_LISTEN`, `CONTROL`) and `CONNECT_CHATD_CONFIG` are ignored, an empty value counts as unset, and any other
//! `CONNECT_CHATD_*` name is an unknown key. Sessions come only from the file.

use super::error::{Problem, Source};
use crate::api::Operation;
use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};
use std::collections::BTreeMap;
use std::sync::Arc;

pub const PREFIX: &str = "CONNECT_CHATD_";
/// The metadata name of this layer.
pub const ENV_NAME: &str = "environment";

/// `CONNECT_CHATD_*` variables that are not daemon keys: those of other commands
/// (`tail`, `emulator`, the control clients) and the config file's path itself.
const OTHER_COMMANDS: [&str; 6] = [
    "PARTICIPANT_TOKEN_FILE",
    "HISTORY",
    "CONNECT_PARTICIPANT",
    "EMULATOR_LISTEN",
    "CONTROL",
    "CONFIG",
];

#[derive(Clone, Copy)]
enum Type {
    Str,
    Bool,
    Float,
    Int,
}

/// The daemon keys that may come from the environment, with the type of their value.
const KEYS: [(&str, Type); 36] = [
    ("region", Type::Str),
    ("proxy", Type::Str),
    ("no_proxy", Type::Str),
    ("proxy_credentials_file", Type::Str),
    ("ca_file", Type::Str),
    ("fips", Type::Bool),
    ("dual_stack", Type::Bool),
    ("endpoint", Type::Str),
    ("state_dir", Type::Str),
    ("heartbeat_interval", Type::Str),
    ("shutdown_timeout", Type::Str),
    ("stdout", Type::Bool),
    ("control.listen", Type::Str),
    ("control.token_file", Type::Str),
    ("control.allow_remote", Type::Bool),
    ("http.listen", Type::Str),
    ("http.readyz_grace", Type::Str),
    ("http.metrics_per_session", Type::Bool),
    ("journal.fsync", Type::Str),
    ("journal.retention", Type::Str),
    ("limits.max_sessions", Type::Int),
    ("limits.max_body", Type::Int),
    ("limits.max_connections", Type::Int),
    ("limits.max_streams", Type::Int),
    ("limits.header_timeout", Type::Str),
    ("limits.idle_timeout", Type::Str),
    ("log.format", Type::Str),
    ("log.level", Type::Str),
    ("cluster.nats", Type::Str),
    ("cluster.instance", Type::Str),
    ("cluster.token_file", Type::Str),
    ("cluster.key_file", Type::Str),
    ("cluster.bucket", Type::Str),
    ("cluster.stream", Type::Str),
    ("cluster.subject", Type::Str),
    ("cluster.instance_ttl", Type::Str),
];

/// The environment as a figment provider; values keep the variable's name for errors.
pub struct EnvProvider {
    /// key path -> (variable, value)
    values: BTreeMap<Vec<String>, (String, Value)>,
    names: Arc<BTreeMap<String, String>>,
}

impl EnvProvider {
    /// Maps `vars`; unknown `CONNECT_CHATD_*` names are returned as problems.
    pub fn new(vars: &[(String, String)]) -> (EnvProvider, Vec<Problem>) {
        let mut values: BTreeMap<Vec<String>, (String, Value)> = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, raw) in vars {
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            if raw.is_empty() || OTHER_COMMANDS.contains(&rest) {
                continue;
            }
            let (path, ty, alias) = match map_name(rest) {
                Ok(found) => found,
                Err(message) => {
                    let key = rest.to_ascii_lowercase().replace("__", ".");
                    problems.push(Problem::new(key, Source::Env(name.clone()), message));
                    continue;
                }
            };
            if alias && values.contains_key(&path) {
                continue;
            }
            values.insert(path, (name.clone(), typed(raw, ty)));
        }
        let names = values
            .iter()
            .map(|(path, (var, _))| (path.join("."), var.clone()))
            .collect();
        let provider = EnvProvider {
            values,
            names: Arc::new(names),
        };
        (provider, problems)
    }
}

/// The key path and value type of a variable name without the prefix; `true` for an alias.
fn map_name(rest: &str) -> Result<(Vec<String>, Type, bool), String> {
    match rest {
        "LOG_LEVEL" => return Ok((vec!["log".into(), "level".into()], Type::Str, true)),
        "LOG_FORMAT" => return Ok((vec!["log".into(), "format".into()], Type::Str, true)),
        _ => {}
    }
    let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    let dotted = parts.join(".");
    if let Some((_, ty)) = KEYS.iter().find(|(k, _)| *k == dotted) {
        return Ok((parts, *ty, false));
    }
    if parts[0] == "sessions" {
        return Err(
            "sessions cannot come from the environment; declare them as [[sessions]] in the config file"
                .into(),
        );
    }
    if parts[0] == "limits" && parts.len() == 3 {
        let op = Operation::ALL
            .iter()
            .find(|op| op.name().eq_ignore_ascii_case(&parts[1]));
        let ty = match parts[2].as_str() {
            "rate" => Type::Float,
            "burst" => Type::Int,
            _ => return Err("unknown key: a limit has only RATE and BURST".into()),
        };
        return match op {
            Some(op) => Ok((
                vec!["limits".into(), op.name().into(), parts[2].clone()],
                ty,
                false,
            )),
            None => Err(format!(
                "unknown operation {:?} under limits; expected one of {}",
                parts[1],
                Operation::ALL.map(|o| o.name()).join(", ")
            )),
        };
    }
    Err(format!(
        "unknown configuration variable; daemon keys are {}, with __ between a section and its key \
         (e.g. {PREFIX}CONTROL__LISTEN, {PREFIX}LIMITS__SENDMESSAGE__RATE)",
        KEYS.map(|(k, _)| format!("{PREFIX}{}", k.replace('.', "__").to_ascii_uppercase()))
            .join(", ")
    ))
}

/// The value of a variable: booleans and numbers are typed when they parse, otherwise
/// left as strings so deserialization reports the wrong type under the variable's name.
fn typed(raw: &str, ty: Type) -> Value {
    let s = raw.trim();
    match ty {
        Type::Bool if s.eq_ignore_ascii_case("true") => Value::from(true),
        Type::Bool if s.eq_ignore_ascii_case("false") => Value::from(false),
        Type::Float => s
            .parse::<f64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(raw)),
        Type::Int => s
            .parse::<u64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(raw)),
        _ => Value::from(raw),
    }
}

impl Provider for EnvProvider {
    fn metadata(&self) -> Metadata {
        let names = Arc::clone(&self.names);
        Metadata::named(ENV_NAME).interpolater(move |_: &Profile, keys: &[&str]| {
            let dotted = keys.join(".");
            names
                .get(&dotted)
                .cloned()
                .unwrap_or_else(|| format!("{PREFIX}{}", keys.join("__").to_ascii_uppercase()))
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut root = Dict::new();
        for (path, (_, value)) in &self.values {
            insert(&mut root, path, value.clone());
        }
        Ok(Profile::Default.collect(root))
    }
}

fn insert(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry(first.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn maps_names_to_keys() {
        let (p, problems) = EnvProvider::new(&vars(&[
            ("CONNECT_CHATD_CONTROL__LISTEN", "unix:/x.sock"),
            ("CONNECT_CHATD_LOG_LEVEL", "debug"),
            ("CONNECT_CHATD_LIMITS__GETTRANSCRIPT__BURST", "3"),
            ("CONNECT_CHATD_HISTORY", "none"),
            ("CONNECT_CHATD_CONFIG", "/etc/connect-chatd/connect-chatd.toml"),
            ("CONNECT_CHATD_CONTROL", "unix:/run/x.sock"),
            ("CONNECT_CHATD_ENDPOINT", ""),
            ("PATH", "/bin"),
        ]));
        assert!(problems.is_empty(), "{problems:?}");
        let keys: Vec<String> = p.values.keys().map(|k| k.join(".")).collect();
        assert_eq!(
            keys,
            ["control.listen", "limits.GetTranscript.burst", "log.level"]
        );
        assert_eq!(p.names["log.level"], "CONNECT_CHATD_LOG_LEVEL");
    }

    #[test]
    fn canonical_name_beats_alias() {
        for order in [[0, 1], [1, 0]] {
            let both = [
                ("CONNECT_CHATD_LOG__LEVEL", "warn"),
                ("CONNECT_CHATD_LOG_LEVEL", "debug"),
            ];
            let list: Vec<_> = order.iter().map(|&i| both[i]).collect();
            let (p, _) = EnvProvider::new(&vars(&list));
            assert_eq!(p.names["log.level"], "CONNECT_CHATD_LOG__LEVEL");
        }
    }

    #[test]
    fn unknown_names_are_problems() {
        let (_, problems) = EnvProvider::new(&vars(&[
            ("CONNECT_CHATD_COLOUR", "red"),
            ("CONNECT_CHATD_SESSIONS", "x"),
            ("CONNECT_CHATD_LIMITS__FLY__RATE", "1"),
        ]));
        assert_eq!(problems.len(), 3);
        assert_eq!(problems[0].source, Source::Env("CONNECT_CHATD_COLOUR".into()));
        assert!(problems[0].message.contains("unknown configuration variable"));
        assert!(problems[1]
            .message
            .contains("sessions cannot come from the environment"));
        assert!(problems[2].message.contains("unknown operation"));
    }
}
