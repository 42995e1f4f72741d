//! What the CLI prints: JSON, aligned tables, times, sizes, and the upload progress bar.

use serde_json::Value;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Prints a JSON value, indented, on stdout.
pub(crate) fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
}

/// Prints rows under headers in aligned columns.
pub(crate) fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A time in milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` UTC; `-` when absent.
pub(crate) fn time_text(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".into(), lectern_core::time::utc_text)
}

/// A byte count for people.
pub(crate) fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The upload's progress bar on stderr (only when stderr is a terminal).
/// A 30-character bar, `#` for the done `fraction` (0 to 1), `.` for the rest.
pub(crate) fn bar(fraction: f64) -> String {
    const WIDTH: u64 = 30;
    let filled = (fraction.clamp(0.0, 1.0) * WIDTH as f64).round() as u64;
    (0..WIDTH).map(|i| if i < filled { '#' } else { '.' }).collect()
}

pub(crate) struct Progress {
    total: u64,
    sent: AtomicU64,
    enabled: bool,
    last: Mutex<Option<Instant>>,
}

impl Progress {
    pub(crate) fn new(total: u64, enabled: bool) -> Self {
        Progress { total, sent: AtomicU64::new(0), enabled, last: Mutex::new(None) }
    }

    /// Bytes to send in all.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Bytes handed to the connection so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub(crate) fn advance(&self, bytes: u64) {
        let sent = self.sent.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if !self.enabled {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) && sent < self.total {
            return;
        }
        *last = Some(Instant::now());
        self.draw(sent);
    }

    fn draw(&self, sent: u64) {
        let fraction = if self.total == 0 { 1.0 } else { (sent as f64 / self.total as f64).min(1.0) };
        let bar = bar(fraction);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2Kuploading [{bar}] {:>3.0}%  {} / {}",
            fraction * 100.0,
            size_text(sent),
            size_text(self.total)
        );
        if sent >= self.total {
            let _ = write!(err, "  loading...");
        }
        let _ = err.flush();
    }

    /// Clears the bar once the server has answered.
    pub(crate) fn finish(&self) {
        if self.enabled && self.last.lock().map(|l| l.is_some()).unwrap_or(true) {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(time_text(Some(0)), "1970-01-01 00:00:00");
        assert_eq!(time_text(Some(951_782_400_000)), "2000-02-29 00:00:00");
        assert_eq!(time_text(Some(1_700_000_000_123)), "2023-11-14 22:13:20");
        assert_eq!(time_text(None), "-");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(size_text(12), "12 B");
        assert_eq!(size_text(1536), "1.5 KiB");
        assert_eq!(size_text(3 << 20), "3.0 MiB");
    }
}
