//! Charts drawn on the server as SVG: pure functions from data to markup, no plotting crate.
//! Each chart is one `<svg class="chart">` sized by its viewBox alone (the stylesheet makes it
//! 100% wide) whose first child is a `<title>` naming it; shapes carry classes (`bar`, `line`,
//! `axis`, `title`, `empty`) rather than colours, so the stylesheet paints them. Every piece of
//! text from the data is escaped for XML, and every number written is finite.

use std::fmt::Write;

const WIDTH: f64 = 400.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;
/// Labels longer than this many characters are cut, with an ellipsis.
const LABEL_CHARS: usize = 24;
/// Bar chart: one row's height, and the space for labels on the left and counts on the right.
const ROW: f64 = 20.0;
const LABEL_SPACE: f64 = 160.0;
const COUNT_SPACE: f64 = 44.0;
/// The most bins a histogram draws.
const MAX_BINS: usize = 200;

/// A histogram of numbers (NaN skipped) in up to `bins` equal-width bins.
/// Infinities are skipped too; a single distinct value gets one bin; at most 200 bins are drawn.
pub fn histogram(title: &str, values: &[f64], bins: usize) -> String {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (Some(min), Some(max)) = (finite.iter().copied().reduce(f64::min), finite.iter().copied().reduce(f64::max))
    else {
        return empty(title);
    };
    let bins = if min == max { 1 } else { bins.clamp(1, MAX_BINS) };
    let counts = bin_counts(&finite, min, max, bins);
    let top = nice_top(counts.iter().copied().max().unwrap_or(0) as f64);
    let (plot_w, plot_h, base) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM, HEIGHT - BOTTOM);
    let step = plot_w / bins as f64;
    let mut body = y_axis(0.0, top, 1.0);
    for (i, &n) in counts.iter().enumerate() {
        let (from, to) = (edge(min, max, i, bins), edge(min, max, i + 1, bins));
        let h = frac(n as f64, 0.0, top) * plot_h;
        let close = if i + 1 == bins { ']' } else { ')' };
        let _ = write!(
            body,
            r#"<rect class="bar" x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}"><title>[{}, {}{close}: {n}</title></rect>"#,
            LEFT + i as f64 * step + 0.5,
            base - h,
            (step - 1.0).max(0.5),
            number(from),
            number(to),
        );
    }
    let mut marks = vec![0, bins];
    if bins >= 4 {
        marks.insert(1, bins / 2);
    }
    for i in marks {
        body += &tick_label(LEFT + i as f64 * step, base + 14.0, &number(edge(min, max, i, bins)));
    }
    body += &axes(LEFT, HEIGHT - BOTTOM, WIDTH - RIGHT);
    svg(title, HEIGHT, &body)
}

/// A horizontal bar chart of (label, count), drawn in the given order (caller sorts/limits).
pub fn bars(title: &str, counts: &[(String, u64)]) -> String {
    if counts.is_empty() {
        return empty(title);
    }
    let height = TOP + ROW * counts.len() as f64 + 24.0;
    let top = nice_top(counts.iter().map(|c| c.1).max().unwrap_or(0) as f64);
    let span = WIDTH - LABEL_SPACE - COUNT_SPACE;
    let mut body = String::new();
    for (i, (label, n)) in counts.iter().enumerate() {
        let y = TOP + i as f64 * ROW;
        let w = frac(*n as f64, 0.0, top) * span;
        let _ = write!(
            body,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect class="bar" x="{LABEL_SPACE:.1}" y="{:.1}" width="{w:.1}" height="{:.1}"><title>{}: {n}</title></rect><text x="{:.1}" y="{:.1}">{}</text>"#,
            LABEL_SPACE - 6.0,
            y + ROW * 0.7,
            escape(&truncate(label, LABEL_CHARS)),
            y + 2.0,
            ROW - 4.0,
            escape(&truncate(label, 4 * LABEL_CHARS)),
            LABEL_SPACE + w + 4.0,
            y + ROW * 0.7,
            number(*n as f64),
        );
    }
    let base = height - 24.0;
    for t in ticks(0.0, top, 1.0) {
        body += &tick_label(LABEL_SPACE + frac(t, 0.0, top) * span, base + 14.0, &number(t));
    }
    body += &axes(LABEL_SPACE, base, LABEL_SPACE + span);
    svg(title, height, &body)
}

/// A line chart of (x, y) points (e.g. requests per second over time), y from 0.
/// Points are joined in the given order; those with a NaN or infinite coordinate are skipped.
pub fn line(title: &str, x_label: &str, y_label: &str, points: &[(f64, f64)]) -> String {
    let points: Vec<(f64, f64)> = points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
    if points.is_empty() {
        return empty(title);
    }
    let fold = |f: fn(f64, f64) -> f64, pick: fn(&(f64, f64)) -> f64| points.iter().map(pick).reduce(f).unwrap_or(0.0);
    let (x_lo, x_hi) = (fold(f64::min, |p| p.0), fold(f64::max, |p| p.0));
    let y_lo = fold(f64::min, |p| p.1).min(0.0);
    let y_hi = nice_top(fold(f64::max, |p| p.1).max(0.0));
    let (plot_w, plot_h, base) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM, HEIGHT - BOTTOM);
    let at = |(x, y): (f64, f64)| (LEFT + frac(x, x_lo, x_hi) * plot_w, base - frac(y, y_lo, y_hi) * plot_h);
    let mut body = y_axis(y_lo, y_hi, 0.0);
    for t in ticks(x_lo, x_hi, 0.0) {
        body += &tick_label(at((t, 0.0)).0, base + 14.0, &number(t));
    }
    let joined: Vec<String> = points.iter().map(|&p| at(p)).map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = write!(body, r#"<polyline class="line" points="{}"/>"#, joined.join(" "));
    if let [p] = points[..] {
        let (x, y) = at(p);
        let _ = write!(body, r#"<circle class="line" cx="{x:.1}" cy="{y:.1}" r="2"/>"#);
    }
    let _ = write!(
        body,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text transform="rotate(-90)" x="{:.1}" y="12" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 6.0,
        escape(&truncate(x_label, 2 * LABEL_CHARS)),
        -(TOP + plot_h / 2.0),
        escape(&truncate(y_label, LABEL_CHARS)),
    );
    body += &axes(LEFT, HEIGHT - BOTTOM, WIDTH - RIGHT);
    svg(title, HEIGHT, &body)
}

/// How many values fall in each of `bins` equal-width bins over `[min, max]` (last bin closed).
fn bin_counts(values: &[f64], min: f64, max: f64, bins: usize) -> Vec<u64> {
    let mut counts = vec![0; bins];
    for &v in values {
        let i = (frac(v, min, max) * bins as f64) as usize;
        counts[i.min(bins - 1)] += 1;
    }
    counts
}

/// The `i`th of `bins` bin edges over `[min, max]`, without overflowing on extreme ranges.
fn edge(min: f64, max: f64, i: usize, bins: usize) -> f64 {
    let f = i as f64 / bins as f64;
    let e = min * (1.0 - f) + max * f;
    e.clamp(min, max)
}

/// Where `v` lies in `[lo, hi]`, from 0 to 1; the middle when the range is empty. Halved first
/// so that `hi - lo` cannot overflow.
fn frac(v: f64, lo: f64, hi: f64) -> f64 {
    let span = hi / 2.0 - lo / 2.0;
    let f = (v / 2.0 - lo / 2.0) / span;
    if span > 0.0 && f.is_finite() {
        f.clamp(0.0, 1.0)
    } else {
        0.5
    }
}

/// A round step (1, 2 or 5 times a power of ten) giving about four ticks over `span`.
fn nice_step(span: f64) -> f64 {
    let raw = span / 4.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|&s| s >= raw);
    step.filter(|s| s.is_finite() && *s > 0.0).unwrap_or(span)
}

/// The top of an axis from 0 to `max`: the next round step at or above it, 1 when `max` is 0.
fn nice_top(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let step = nice_step(max);
    let top = (max / step).ceil() * step;
    if top.is_finite() && top >= max {
        top
    } else {
        max
    }
}

/// Round values within `[lo, hi]`, at least `least` apart (1 for counts), to label an axis with;
/// just `lo` for an empty range.
fn ticks(lo: f64, hi: f64, least: f64) -> Vec<f64> {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return vec![lo];
    }
    let step = nice_step(span).max(least);
    let first = (lo / step).ceil() * step;
    let mut out: Vec<f64> = Vec::new();
    for i in 0..12 {
        let t = first + i as f64 * step;
        if t > hi || !t.is_finite() {
            break;
        }
        if out.last().is_none_or(|&last| t > last) {
            out.push(t);
        }
    }
    out
}

/// The left axis's ticks and their labels (at least `least` apart), from `lo` at the bottom to
/// `hi` at the top.
fn y_axis(lo: f64, hi: f64, least: f64) -> String {
    let (base, plot_h) = (HEIGHT - BOTTOM, HEIGHT - TOP - BOTTOM);
    ticks(lo, hi, least)
        .into_iter()
        .map(|t| {
            let y = base - frac(t, lo, hi) * plot_h;
            format!(
                r#"<line class="axis" x1="{:.1}" y1="{y:.1}" x2="{LEFT:.1}" y2="{y:.1}"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 4.0,
                LEFT - 6.0,
                y + 4.0,
                number(t),
            )
        })
        .collect()
}

/// The left axis at `left` from `TOP` down to `base`, and the bottom axis along `base` to `right`.
fn axes(left: f64, base: f64, right: f64) -> String {
    format!(
        r#"<line class="axis" x1="{left:.1}" y1="{TOP:.1}" x2="{left:.1}" y2="{base:.1}"/><line class="axis" x1="{left:.1}" y1="{base:.1}" x2="{right:.1}" y2="{base:.1}"/>"#
    )
}

/// A label centred at (x, y); `text` must already be safe (a formatted number).
fn tick_label(x: f64, y: f64, text: &str) -> String {
    format!(r#"<text x="{x:.1}" y="{y:.1}" text-anchor="middle">{text}</text>"#)
}

/// A chart with nothing to draw: the title and "no data".
fn empty(title: &str) -> String {
    let body = format!(
        r#"<text class="empty" x="{:.1}" y="{:.1}" text-anchor="middle">no data</text>"#,
        WIDTH / 2.0,
        HEIGHT / 2.0,
    );
    svg(title, HEIGHT, &body)
}

/// The `<svg>` around `body`: its `<title>` first, then the title drawn at the top. The id the
/// title is labelled by is a hash of the chart, so charts on one page differ unless identical.
fn svg(title: &str, height: f64, body: &str) -> String {
    let id = fnv(title.bytes().chain(body.bytes()));
    format!(
        r#"<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" xmlns="http://www.w3.org/2000/svg" aria-labelledby="chart-{id:016x}"><title id="chart-{id:016x}">{}</title><text class="title" x="8" y="18">{}</text>{body}</svg>"#,
        escape(title),
        escape(&truncate(title, 2 * LABEL_CHARS)),
    )
}

/// The 64-bit FNV-1a hash of some bytes.
fn fnv(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// `text` safe inside XML or HTML text and attributes; control characters are dropped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// `text` cut to at most `max` characters, the last an ellipsis when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    text.chars().take(max.saturating_sub(1)).chain(['…']).collect()
}

/// A number, compactly: integers without decimals, else three significant digits; from ten
/// thousand on with a suffix (12k, 1.2M, 3G, 4T), beyond that in exponent form.
fn number(v: f64) -> String {
    if !v.is_finite() {
        return "0".to_string();
    }
    if v.abs() < 1e4 {
        return plain(v);
    }
    for (scale, suffix) in [(1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T")] {
        let s = plain(v / scale);
        if s.parse::<f64>().is_ok_and(|r| r.abs() < 1000.0) {
            return s + suffix;
        }
    }
    format!("{v:.2e}")
}

/// `v` to three significant digits (or all of its integer part), trailing zeros dropped.
fn plain(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let decimals = (2.0 - v.abs().log10().floor()).clamp(0.0, 12.0) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
    if s == "-0" { "0" } else { s }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chart must be one element, `<title>` first, with balanced tags and no NaN or inf.
    fn check(svg: &str) {
        assert!(svg.starts_with("<svg class=\"chart\""), "{svg}");
        assert!(svg[svg.find('>').unwrap() + 1..].starts_with("<title id=\"chart-"), "{svg}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        let mut open: Vec<&str> = Vec::new();
        for tag in svg.split('<').skip(1).map(|t| &t[..t.find('>').expect("tag closed")]) {
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop(), Some(name), "{svg}");
            } else if !tag.ends_with('/') {
                open.push(tag.split(' ').next().unwrap());
            }
        }
        assert!(open.is_empty(), "{svg}");
        for (i, _) in svg.match_indices('&') {
            assert!(["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"].iter().any(|e| svg[i..].starts_with(e)));
        }
    }

    #[test]
    fn data_text_is_escaped() {
        let evil = "<script>alert(1)</script>";
        let odd = "\"'&";
        for svg in [
            bars(evil, &[(evil.to_string(), 3), (odd.to_string(), 1)]),
            histogram(odd, &[1.0, 2.0], 4),
            line(evil, odd, evil, &[(0.0, 1.0), (1.0, 2.0)]),
        ] {
            check(&svg);
            assert!(!svg.contains("<script") && !svg.contains(odd), "{svg}");
        }
        let svg = bars(evil, &[(evil.to_string(), 3), (odd.to_string(), 1)]);
        assert!(svg.contains("<title>&lt;script&gt;alert(1)&lt;/script&gt;: 3</title>"), "{svg}");
        assert!(svg.contains("<title>&quot;&#39;&amp;: 1</title>"), "{svg}");
        assert!(line("t", odd, evil, &[(0.0, 1.0)]).contains(">&quot;&#39;&amp;</text>"));
    }

    #[test]
    fn long_labels_are_cut() {
        let svg = bars("t", &[("x".repeat(100), 7)]);
        check(&svg);
        assert!(svg.contains(&format!(">{}…</text>", "x".repeat(23))));
        assert!(!svg.contains(&"x".repeat(100)));
    }

    #[test]
    fn empty_inputs_say_no_data() {
        for svg in [
            histogram("h", &[], 10),
            histogram("h", &[f64::NAN, f64::INFINITY], 10),
            bars("b", &[]),
            line("l", "x", "y", &[]),
            line("l", "x", "y", &[(f64::NAN, 1.0)]),
        ] {
            check(&svg);
            assert!(svg.contains("no data"));
        }
    }

    #[test]
    fn a_single_value_gets_one_bin() {
        let svg = histogram("h", &[5.0, 5.0, 5.0], 10);
        check(&svg);
        assert_eq!(svg.matches("class=\"bar\"").count(), 1);
        assert!(svg.contains("<title>[5, 5]: 3</title>"));
        check(&line("l", "x", "y", &[(3.0, 0.0)]));
        check(&bars("b", &[("zero".into(), 0)]));
        assert!(!svg.contains(">0.5<"), "counts are whole: {svg}");
    }

    /// The counts in a histogram's bar tooltips, `<title>[from, to): n</title>`.
    fn drawn(svg: &str) -> Vec<u64> {
        svg.split("<title>[")
            .skip(1)
            .map(|t| t[t.find(": ").unwrap() + 2..t.find('<').unwrap()].parse().unwrap())
            .collect()
    }

    #[test]
    fn bins_hold_every_finite_value() {
        let values = [f64::NAN, -3.5, 0.0, 0.1, 2.0, 2.0, 9.99, 10.0, f64::INFINITY, 1e-9];
        for bins in [1, 3, 7, 12] {
            assert_eq!(bin_counts(&values[1..8], -3.5, 10.0, bins).iter().sum::<u64>(), 7);
            let svg = histogram("h", &values, bins);
            check(&svg);
            assert_eq!(drawn(&svg).len(), bins);
            assert_eq!(drawn(&svg).iter().sum::<u64>(), 8);
        }
    }

    #[test]
    fn extremes_write_no_nan_or_inf() {
        let wild = [f64::MAX, -f64::MAX, f64::MIN_POSITIVE, 0.0, -0.0, 1e300, f64::NAN, f64::NEG_INFINITY];
        check(&histogram("h", &wild, 12));
        check(&histogram("h", &[f64::MAX], 12));
        check(&histogram("h", &[1.0, 1.0 + f64::EPSILON], 0));
        check(&bars("b", &[("a".into(), u64::MAX), ("b".into(), 1)]));
        let points: Vec<(f64, f64)> = wild.iter().zip(wild.iter().rev()).map(|(&x, &y)| (x, y)).collect();
        check(&line("l", "x", "y", &points));
        check(&line("l", "x", "y", &[(1e16, 1.0), (1e16 + 2.0, -1e-300)]));
    }

    #[test]
    fn numbers_are_compact() {
        let cases = [
            (0.0, "0"),
            (-0.0, "0"),
            (7.0, "7"),
            (-3.0, "-3"),
            (2.5, "2.5"),
            (0.1234, "0.123"),
            (12.345, "12.3"),
            (1234.0, "1234"),
            (12_000.0, "12k"),
            (1_234_567.0, "1.23M"),
            (999_999.0, "1M"),
            (3e9, "3G"),
            (1e20, "1.00e20"),
        ];
        for (v, want) in cases {
            assert_eq!(number(v), want, "{v}");
        }
    }
}
