//! The events page's timeline: an inline SVG bar chart with a y-axis, time labels the
//! console script can show in local time (`data-t`), and each bar a link that zooms
//! the search to its time range. No script is needed to read or zoom it.

use maud::{Markup, html};

use crate::timeutil::format_rfc3339;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 150.0;
/// Room for the y-axis labels on the left and the time labels below.
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 20.0;
const TOP: f64 = 8.0;

/// A round step for about four y-axis ticks up to `max` (1, 2 or 5 times a power of ten).
pub fn tick_step(max: i64) -> i64 {
    let raw = (max.max(1) as f64 / 4.0).max(1.0);
    let pow = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * pow).find(|s| *s >= raw).unwrap_or(10.0 * pow);
    (step as i64).max(1)
}

/// A time label as UTC text, and how the script shortens the local one (`data-f`).
fn label(t: i64, span: i64) -> (String, &'static str) {
    let full = format_rfc3339(t);
    if span > 2 * 86_400 { (full[..10].to_string(), "date") } else { (full[..16].replace('T', " "), "min") }
}

/// The chart of `(bucket start, count)` over `[from, to)` in buckets of `bucket` seconds;
/// `zoom(start, end)` is the link a bar leads to.
pub fn chart(points: &[(i64, i64)], from: i64, to: i64, bucket: i64, zoom: impl Fn(i64, i64) -> String) -> Markup {
    let bucket = bucket.max(1);
    let counts = crate::query::chart::bucket_counts(points, from, to, bucket);
    let n = counts.len();
    let peak = counts.iter().copied().max().unwrap_or(0);
    let step = tick_step(peak);
    let top = (peak.max(1) + step - 1) / step * step;
    let plot_h = HEIGHT - BOTTOM - TOP;
    let y = |v: i64| TOP + plot_h - v as f64 / top as f64 * plot_h;
    let bw = (WIDTH - LEFT) / n as f64;
    let ticks: Vec<i64> = (0..=top / step).map(|k| k * step).collect();
    // Five time labels, at bucket boundaries.
    let marks: Vec<usize> = (0..5).map(|k| k * n / 4).collect();
    let span = to - from;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" class="chart" id="timeline" viewBox=(format!("0 0 {WIDTH} {HEIGHT}"))
            width=(WIDTH) height=(HEIGHT) role="img" aria-label=(format!("events over time, at most {peak} per bar")) {
            @for v in &ticks {
                line class="grid" x1=(LEFT) x2=(WIDTH) y1=(format!("{:.1}", y(*v))) y2=(format!("{:.1}", y(*v))) {}
                text class="axis" x=(LEFT - 4.0) y=(format!("{:.1}", y(*v) + 4.0)) text-anchor="end" { (v) }
            }
            line class="axis-line" x1=(LEFT) x2=(LEFT) y1=(TOP) y2=(TOP + plot_h) {}
            @for (i, &c) in counts.iter().enumerate() {
                @if c > 0 {
                    @let start = from + i as i64 * bucket;
                    @let (when, fmt) = label(start, bucket * 3);
                    a class="bar" href=(zoom(start, start + bucket)) {
                        rect x=(format!("{:.2}", LEFT + i as f64 * bw)) y=(format!("{:.2}", y(c)))
                            width=(format!("{:.2}", (bw - 0.5).max(0.5))) height=(format!("{:.2}", (TOP + plot_h - y(c)).max(1.0))) {
                            title data-t=(start) data-f=(fmt) data-s=(format!(": {c} events")) { (when) " UTC: " (c) " events" }
                        }
                    }
                }
            }
            @for (k, &i) in marks.iter().enumerate() {
                @let t = from + i as i64 * bucket;
                @let (text, fmt) = label(t, span);
                @let anchor = match k { 0 => "start", 4 => "end", _ => "middle" };
                text class="axis" x=(format!("{:.1}", LEFT + i as f64 * bw)) y=(HEIGHT - 4.0) text-anchor=(anchor)
                    data-t=(t) data-f=(fmt) { (text) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_peak() {
        assert_eq!(tick_step(0), 1);
        assert_eq!(tick_step(7), 2);
        assert_eq!(tick_step(40), 10);
        assert_eq!(tick_step(1234), 500);
    }

    #[test]
    fn each_non_empty_bar_links_to_its_range_and_the_axis_names_the_peak() {
        let svg = chart(&[(0, 3), (86_400, 7), (86_400 * 5, 1)], 0, 86_400 * 7, 86_400, |a, b| format!("/z?{a}-{b}"))
            .into_string();
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("href=\"/z?86400-172800\""), "{svg}");
        assert!(svg.contains("1970-01-02 UTC: 7 events"), "a day's bar is named by its date: {svg}");
        // y-axis: 0, 2, 4, 6, 8 (the peak, 7, rounded up to a tick).
        for t in [">0<", ">2<", ">8<"] {
            assert!(svg.contains(t), "{t} in {svg}");
        }
        assert!(svg.contains("data-t=\"0\" data-f=\"date\">1970-01-01<"), "{svg}");
    }
}
