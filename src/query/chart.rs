//! Bar charts as inline SVG (for the reports and the console's timeline):
//! no script, no fonts fetched, prints as it shows.

use crate::timeutil::format_rfc3339;

/// A histogram of `(bucket start, count)` over `[from, to)` in buckets of `bucket` seconds,
/// `width` × `height` pixels, with the first and last dates and the peak written on it.
pub fn bar_chart(points: &[(i64, i64)], from: i64, to: i64, bucket: i64, width: u32, height: u32) -> String {
    let bucket = bucket.max(1);
    let counts = bucket_counts(points, from, to, bucket);
    let n = counts.len();
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let (w, h) = (f64::from(width), f64::from(height));
    let plot_h = h - 18.0;
    let bw = w / n as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"events over time, peak {max}\">"
    );
    svg.push_str(&format!(
        "<line x1=\"0\" y1=\"{plot_h:.1}\" x2=\"{w:.1}\" y2=\"{plot_h:.1}\" stroke=\"#999\" stroke-width=\"1\"/>"
    ));
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let bh = (c as f64 / max as f64 * (plot_h - 12.0)).max(1.0);
        let x = i as f64 * bw;
        let start = from + i as i64 * bucket;
        svg.push_str(&format!(
            "<rect x=\"{x:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{bh:.2}\" fill=\"#3b6ea8\"><title>{}: {c}</title></rect>",
            plot_h - bh,
            (bw - 0.5).max(0.5),
            format_rfc3339(start)
        ));
    }
    let label = |t: i64| format_rfc3339(t)[..10].to_string();
    svg.push_str(&format!(
        "<text x=\"0\" y=\"{:.0}\" font-size=\"11\" fill=\"#555\">{}</text><text x=\"{w:.0}\" y=\"{:.0}\" font-size=\"11\" fill=\"#555\" text-anchor=\"end\">{}</text><text x=\"2\" y=\"10\" font-size=\"11\" fill=\"#555\">peak {max}</text></svg>",
        h - 3.0,
        label(from),
        h - 3.0,
        label(to - 1)
    ));
    svg
}

/// The count of each bucket of `bucket` seconds over `[from, to)` (at most 2,000 buckets),
/// empty ones included, from the `(bucket start, count)` points a histogram query gives.
pub fn bucket_counts(points: &[(i64, i64)], from: i64, to: i64, bucket: i64) -> Vec<i64> {
    let bucket = bucket.max(1);
    let n = ((to - from + bucket - 1) / bucket).clamp(1, 2000) as usize;
    let mut counts = vec![0i64; n];
    for &(at, c) in points {
        let i = (at - from).div_euclid(bucket);
        if (0..n as i64).contains(&i) {
            counts[i as usize] += c;
        }
    }
    counts
}

/// A bucket size that gives a readable number of bars for a span.
pub fn bucket_for(span: i64) -> i64 {
    const STEPS: &[i64] = &[60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86_400, 7 * 86_400, 30 * 86_400];
    STEPS.iter().copied().find(|s| span / s <= 120).unwrap_or(30 * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bar_per_non_empty_bucket_with_its_count() {
        let svg = bar_chart(&[(0, 3), (86_400, 7), (86_400 * 5, 1)], 0, 86_400 * 7, 86_400, 700, 100);
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("1970-01-02T00:00:00Z: 7"));
        assert!(svg.contains("peak 7"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(bucket_for(30 * 86_400), 6 * 3600);
        assert_eq!(bucket_for(3600), 60);
    }
}
