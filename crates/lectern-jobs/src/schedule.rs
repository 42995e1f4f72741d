//! When a job fires: a fixed interval from its anchor, or a cron expression in a time zone;
//! and what to do with a firing that is due (run it, or record it as missed), given the misfire
//! grace and coalescing. Pure functions of times in milliseconds since the epoch.

use chrono::TimeZone;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use std::time::Duration;

/// Shortest interval accepted.
pub const MIN_EVERY: Duration = Duration::from_millis(100);
/// Most cron firings walked through when catching up (beyond: counted as "more than").
const MAX_WALK: u32 = 100_000;

/// A job's schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    Every { every_ms: i64 },
    Cron { text: String, cron: Box<Cron>, zone: chrono_tz::Tz },
}

/// What to do with a due firing.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Run the firing `scheduled_for` (standing for `count` firings); the job next fires at `next`.
    Run { scheduled_for: i64, count: u32, next: Option<i64> },
    /// Skip `count` firings, the latest `scheduled_for`, that are `late_ms` past their time.
    Missed { scheduled_for: i64, count: u32, late_ms: i64, next: Option<i64> },
}

impl Schedule {
    /// Exactly one of `every` and `cron`; `timezone` only with `cron`.
    pub fn new(every: Option<Duration>, cron: Option<&str>, timezone: Option<&str>) -> Result<Schedule, String> {
        match (every, cron) {
            (Some(_), Some(_)) => Err("give 'every' or 'cron', not both".into()),
            (None, None) => Err("give 'every' (an interval) or 'cron' (an expression)".into()),
            (Some(every), None) => {
                if timezone.is_some() {
                    return Err("'timezone' applies to 'cron' only".into());
                }
                if every < MIN_EVERY {
                    return Err(format!("'every' must be at least {} ms", MIN_EVERY.as_millis()));
                }
                Ok(Schedule::Every { every_ms: every.as_millis().min(i64::MAX as u128) as i64 })
            }
            (None, Some(text)) => {
                let zone = match timezone {
                    None => chrono_tz::UTC,
                    Some(name) => name
                        .parse::<chrono_tz::Tz>()
                        .map_err(|_| format!("unknown time zone '{name}' (an IANA name such as Europe/Paris)"))?,
                };
                let fields = text.split_whitespace().count();
                if !(5..=6).contains(&fields) {
                    return Err(format!(
                        "invalid 'cron' expression '{text}': 5 fields (minute hour day month weekday), or 6 with seconds first"
                    ));
                }
                let cron = CronParser::builder()
                    .seconds(Seconds::Optional)
                    .build()
                    .parse(text)
                    .map_err(|e| format!("invalid 'cron' expression '{text}': {e}"))?;
                Ok(Schedule::Cron { text: text.to_string(), cron: Box::new(cron), zone })
            }
        }
    }

    /// What identifies the schedule: a job whose key changed starts its schedule over.
    pub fn key(&self) -> String {
        match self {
            Schedule::Every { every_ms } => format!("every {every_ms}"),
            Schedule::Cron { text, zone, .. } => format!("cron {text} {zone}"),
        }
    }

    /// The first firing strictly after `t` (interval firings are `anchor + k * every`, k ≥ 1).
    pub fn next_after(&self, anchor: i64, t: i64) -> Option<i64> {
        match self {
            Schedule::Every { every_ms } => {
                let first = anchor.checked_add(*every_ms)?;
                if t < first {
                    return Some(first);
                }
                let k = (t - first) / every_ms + 1;
                first.checked_add(k.checked_mul(*every_ms)?)
            }
            Schedule::Cron { cron, zone, .. } => {
                let at = zone.timestamp_millis_opt(t).single()?;
                cron.find_next_occurrence(&at, false).ok().map(|next| next.timestamp_millis())
            }
        }
    }

    /// The latest firing at or before `now`, and how many firings lie in `[from, now]` (`from`
    /// itself a firing, at or before `now`).
    fn latest(&self, anchor: i64, from: i64, now: i64) -> (i64, u32) {
        match self {
            Schedule::Every { every_ms } => {
                let steps = (now - from) / every_ms;
                (from + steps * every_ms, (steps + 1).min(u32::MAX as i64) as u32)
            }
            Schedule::Cron { .. } => {
                let (mut latest, mut count) = (from, 1u32);
                while count < MAX_WALK {
                    match self.next_after(anchor, latest) {
                        Some(next) if next <= now => {
                            latest = next;
                            count += 1;
                        }
                        _ => return (latest, count),
                    }
                }
                // Too many to walk: the latest is the one before the next firing after now.
                (now, count)
            }
        }
    }

    /// What to do with the firing `due` (at or before `now`).
    pub fn decide(&self, anchor: i64, due: i64, now: i64, grace_ms: i64, coalesce: bool) -> Decision {
        if coalesce {
            let (latest, count) = self.latest(anchor, due, now);
            let next = self.next_after(anchor, now);
            let late_ms = now - latest;
            if late_ms <= grace_ms {
                return Decision::Run { scheduled_for: latest, count, next };
            }
            return Decision::Missed { scheduled_for: latest, count, late_ms, next };
        }
        let late_ms = now - due;
        if late_ms <= grace_ms {
            return Decision::Run { scheduled_for: due, count: 1, next: self.next_after(anchor, due) };
        }
        // Every firing more than the grace late is missed at once; the next one is the first
        // still within the grace (or in the future).
        let cut = now - grace_ms - 1;
        let (latest, count) = self.latest(anchor, due, cut);
        Decision::Missed { scheduled_for: latest, count, late_ms: now - latest, next: self.next_after(anchor, latest) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    fn every(ms: i64) -> Schedule {
        Schedule::new(Some(Duration::from_millis(ms as u64)), None, None).unwrap()
    }

    #[test]
    fn intervals_fire_on_their_grid() {
        let s = every(10 * S);
        assert_eq!(s.next_after(0, -5), Some(10 * S));
        assert_eq!(s.next_after(0, 0), Some(10 * S));
        assert_eq!(s.next_after(0, 10 * S), Some(20 * S));
        assert_eq!(s.next_after(0, 25 * S), Some(30 * S));
    }

    #[test]
    fn a_cron_fires_in_its_time_zone() {
        let s = Schedule::new(None, Some("0 3 * * *"), Some("Europe/Paris")).unwrap();
        // 2026-07-01T00:00:00Z; Paris is UTC+2 in summer: 03:00 Paris = 01:00 UTC.
        let midnight = 1_782_864_000_000;
        assert_eq!(s.next_after(0, midnight), Some(midnight + 3600 * S));
        let seconds = Schedule::new(None, Some("*/2 * * * * *"), None).unwrap();
        assert_eq!(seconds.next_after(0, midnight), Some(midnight + 2 * S));
    }

    #[test]
    fn bad_schedules_are_refused() {
        assert!(Schedule::new(Some(Duration::ZERO), None, None).is_err());
        assert!(Schedule::new(Some(Duration::from_millis(99)), None, None).is_err());
        assert!(Schedule::new(None, Some("61 * * * *"), None).is_err());
        assert!(Schedule::new(None, Some("* * *"), None).is_err());
        assert!(Schedule::new(None, Some("* * * * *"), Some("Nowhere/City")).is_err());
        assert!(Schedule::new(Some(Duration::from_secs(1)), None, Some("UTC")).is_err());
    }

    #[test]
    fn a_firing_on_time_runs() {
        let s = every(10 * S);
        assert_eq!(
            s.decide(0, 10 * S, 10 * S + 5, 60 * S, true),
            Decision::Run { scheduled_for: 10 * S, count: 1, next: Some(20 * S) }
        );
    }

    #[test]
    fn after_downtime_missed_firings_coalesce_into_one_run_within_the_grace() {
        let s = every(10 * S);
        // Down from 9 s to 35 s: firings at 10, 20, 30 were missed; 30 is 5 s late.
        assert_eq!(
            s.decide(0, 10 * S, 35 * S, 6 * S, true),
            Decision::Run { scheduled_for: 30 * S, count: 3, next: Some(40 * S) }
        );
        // With a 4 s grace the latest firing is too late: nothing runs.
        assert_eq!(
            s.decide(0, 10 * S, 35 * S, 4 * S, true),
            Decision::Missed { scheduled_for: 30 * S, count: 3, late_ms: 5 * S, next: Some(40 * S) }
        );
    }

    #[test]
    fn without_coalescing_each_firing_within_the_grace_runs_in_turn() {
        let s = every(10 * S);
        // At 35 s with a 20 s grace: 10 is missed (25 s late); 20 and 30 run in turn.
        let first = s.decide(0, 10 * S, 35 * S, 20 * S, false);
        assert_eq!(first, Decision::Missed { scheduled_for: 10 * S, count: 1, late_ms: 25 * S, next: Some(20 * S) });
        assert_eq!(
            s.decide(0, 20 * S, 35 * S, 20 * S, false),
            Decision::Run { scheduled_for: 20 * S, count: 1, next: Some(30 * S) }
        );
    }

    #[test]
    fn a_cron_catch_up_walks_to_the_latest_firing() {
        let s = Schedule::new(None, Some("*/10 * * * * *"), None).unwrap();
        let t0 = 1_782_864_000_000;
        assert_eq!(
            s.decide(0, t0, t0 + 35 * S, 6 * S, true),
            Decision::Run { scheduled_for: t0 + 30 * S, count: 4, next: Some(t0 + 40 * S) }
        );
    }
}
