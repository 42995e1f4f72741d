//! Durations of the config file and the API (jobs, the proxy): a number of seconds, or a string of numbers with units
//! (`ms`, `s`, `m`, `h`, `d`), such as `"500ms"`, `"90s"` or `"1h30m"`.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

/// Parses `"1h30m"`, `"500ms"`, `"0"`, `"2.5s"`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration '{text}': use a number of seconds or units ms, s, m, h, d (\"1h30m\")");
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds_to_duration(seconds).ok_or_else(bad);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let unit_end =
            rest[number_end..].find(|c: char| c.is_ascii_digit() || c == '.').map_or(rest.len(), |i| i + number_end);
        let number: f64 = rest[..number_end].parse().map_err(|_| bad())?;
        let unit = match &rest[number_end..unit_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad()),
        };
        total = total.checked_add(seconds_to_duration(number * unit).ok_or_else(bad)?).ok_or_else(bad)?;
        rest = &rest[unit_end..];
    }
    Ok(total)
}

fn seconds_to_duration(seconds: f64) -> Option<Duration> {
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::try_from_secs_f64(seconds).ok()).flatten()
}

/// Serde: a duration given as a number of seconds or a string with units.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    deserializer.deserialize_any(DurationVisitor).map(Some)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration: a number of seconds or a string such as \"500ms\", \"5m\", \"1h30m\"")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v).map(Duration::from_secs).map_err(|_| E::custom(format!("invalid duration {v}: negative")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        seconds_to_duration(v).ok_or_else(|| E::custom(format!("invalid duration {v}")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_numbers() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "5x", "m", "-1", "1h-3m", "s5", "1e400"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
