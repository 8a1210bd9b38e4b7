//! Durations in the configuration: a number of seconds (`90`, `1.5`) or a string with a
//! unit (`"90s"`, `"5m"`, `"2h"`, `"1d"`, `"250ms"`, `"1.5s"`; a bare `"90"` is seconds
//! too, which is what an environment variable holds). Zero, negative, non-finite and
//! absurdly long (over 10^9 s) durations are refused while deserializing, so the error
//! carries the key and its source.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// The longest duration accepted, in seconds (about 31 years).
const MAX_SECS: f64 = 1e9;

/// A positive duration as written in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

/// Parses `"90s"`, `"5m"`, `"2h"`, `"1d"`, `"250ms"`, `"1.5s"` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (number, unit) = (t[..split].trim(), t[split..].trim());
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => {
            return Err(format!(
                "{text:?} is not a duration: the unit must be ms, s, m, h or d (e.g. \"90s\")"
            ))
        }
    };
    let value: f64 = number.parse().map_err(|_| {
        format!("{text:?} is not a duration: expected a number of seconds or e.g. \"90s\", \"5m\"")
    })?;
    from_secs(value * scale).map_err(|_| format!("{text:?} is not a positive duration"))
}

/// A positive, finite number of seconds below [`MAX_SECS`].
pub fn from_secs(secs: f64) -> Result<Duration, String> {
    if secs.is_finite() && secs > 0.0 && secs < MAX_SECS {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!("{secs} is not a positive number of seconds"))
    }
}

/// Renders a duration the way the configuration accepts it: `7d`, `90s`, `1.5s`, `250ms`.
pub fn display(d: Duration) -> String {
    let ms = d.as_millis();
    let secs = d.as_secs();
    if d.subsec_nanos() == 0 {
        match secs {
            s if s % 86400 == 0 => format!("{}d", s / 86400),
            s if s % 3600 == 0 => format!("{}h", s / 3600),
            s if s % 60 == 0 => format!("{}m", s / 60),
            s => format!("{s}s"),
        }
    } else if d < Duration::from_secs(1) && d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{ms}ms")
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.subsec_nanos() == 0 {
            s.serialize_u64(self.0.as_secs())
        } else {
            s.serialize_f64(self.0.as_secs_f64())
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecondsVisitor)
    }
}

struct SecondsVisitor;

impl Visitor<'_> for SecondsVisitor {
    type Value = Seconds;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number of seconds or a string such as \"90s\", \"5m\", \"2h\", \"1d\", \"250ms\"")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
        from_secs(v).map(Seconds).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
        self.visit_f64(v as f64)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
        self.visit_f64(v as f64)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
        parse_duration(v).map(Seconds).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_forms() {
        let p = |s| parse_duration(s).unwrap();
        assert_eq!(p("90s"), Duration::from_secs(90));
        assert_eq!(p("90"), Duration::from_secs(90));
        assert_eq!(p(" 5m "), Duration::from_secs(300));
        assert_eq!(p("2h"), Duration::from_secs(7200));
        assert_eq!(p("1d"), Duration::from_secs(86400));
        assert_eq!(p("250ms"), Duration::from_millis(250));
        assert_eq!(p("1.5s"), Duration::from_millis(1500));
        assert_eq!(p("1.5 s"), Duration::from_millis(1500));
        for bad in ["", "s", "0", "0s", "-1s", "1w", "abc", "1e10", "NaN", "inf"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse_duration("1w").unwrap_err().contains("unit"));
    }

    #[test]
    fn display_round_trips() {
        for d in [
            Duration::from_secs(10),
            Duration::from_millis(250),
            Duration::from_millis(1500),
            Duration::from_secs(604800),
        ] {
            assert_eq!(parse_duration(&display(d)).unwrap(), d);
        }
        assert_eq!(display(Duration::from_secs(10)), "10s");
        assert_eq!(display(Duration::from_millis(250)), "250ms");
        assert_eq!(display(Duration::from_secs(604800)), "7d");
        assert_eq!(display(Duration::from_secs(90)), "90s");
        assert_eq!(display(Duration::from_secs(120)), "2m");
    }

    #[test]
    fn deserializes_numbers_and_strings() {
        let n: Seconds = serde_json::from_str("1.5").unwrap();
        assert_eq!(n.0, Duration::from_millis(1500));
        let n: Seconds = serde_json::from_str("10").unwrap();
        assert_eq!(n.0, Duration::from_secs(10));
        let s: Seconds = serde_json::from_str("\"5m\"").unwrap();
        assert_eq!(s.0, Duration::from_secs(300));
        assert!(serde_json::from_str::<Seconds>("0").is_err());
        assert!(serde_json::from_str::<Seconds>("-3").is_err());
        assert!(serde_json::from_str::<Seconds>("true").is_err());
    }
}
