//! A tiny SVG writer for the charts of `docs/benchmarks/`: line charts
//! with logarithmic axes, and horizontal bar charts on a logarithmic
//! scale. No dependency; the output is plain SVG 1.1 text.

use std::fmt::Write as _;

/// One line of a chart.
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) points: Vec<(f64, f64)>,
}

/// A line chart: log-scaled x and y.
pub(crate) struct Chart {
    pub(crate) title: String,
    pub(crate) x_label: String,
    pub(crate) y_label: String,
    pub(crate) series: Vec<Series>,
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `1.2M`, `350k`, `12`.
fn short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

impl Chart {
    pub(crate) fn render(&self) -> String {
        let (w, h) = (720.0, 420.0);
        let (left, right, top, bottom) = (80.0, 170.0, 40.0, 60.0);
        let (pw, ph) = (w - left - right, h - top - bottom);
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0));
        let x_max = xs.clone().fold(1.0_f64, f64::max).max(10.0);
        let x_min = xs.fold(x_max, f64::min).max(1.0);
        let ys = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|y| *y > 0.0);
        let y_top = ys.clone().fold(1.0_f64, f64::max);
        let y_bottom = ys.fold(y_top, f64::min);
        let (ly0, ly1) = (
            y_bottom.log10().floor(),
            y_top.log10().ceil().max(y_bottom.log10().floor() + 1.0),
        );
        let (lx0, lx1) = (x_min.log10(), x_max.log10().max(x_min.log10() + 1.0));
        let px = |x: f64| left + (x.max(x_min).log10() - lx0) / (lx1 - lx0) * pw;
        let py = |y: f64| top + ph - (y.max(1.0).log10() - ly0) / (ly1 - ly0) * ph;
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = write!(
            s,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
            left + pw / 2.0,
            esc(&self.title)
        );
        // Grid and y ticks: 1, 2, 5 per decade (log scale).
        let mut decade = ly0;
        while decade < ly1 {
            for m in [1.0, 2.0, 5.0] {
                let y = m * 10_f64.powf(decade);
                let yy = py(y);
                let _ = write!(
                    s,
                    r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                    left + pw,
                    left - 6.0,
                    yy + 4.0,
                    short(y)
                );
            }
            decade += 1.0;
        }
        // x ticks at every x of the data.
        let mut ticks: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .collect();
        ticks.sort_by(f64::total_cmp);
        ticks.dedup();
        for x in ticks {
            let xx = px(x);
            let _ = write!(
                s,
                r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                top + ph,
                top + ph + 18.0,
                short(x)
            );
        }
        let _ = write!(
            s,
            r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
        );
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{} (log scale)</text>"#,
            left + pw / 2.0,
            h - 18.0,
            esc(&self.x_label)
        );
        let _ = write!(
            s,
            r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{} (log scale)</text>"#,
            top + ph / 2.0,
            esc(&self.y_label)
        );
        for (i, series) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let path: Vec<String> = series
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = write!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                path.join(" ")
            );
            for &(x, y) in &series.points {
                let _ = write!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"><title>{}: {} at {}</title></circle>"#,
                    px(x),
                    py(y),
                    esc(&series.name),
                    short(y),
                    short(x)
                );
            }
            let ly = top + 10.0 + 20.0 * i as f64;
            let _ = write!(
                s,
                r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                left + pw + 12.0,
                left + pw + 32.0,
                left + pw + 38.0,
                ly + 4.0,
                esc(&series.name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// A horizontal bar chart of `(label, value, kind)` on a log scale; bars
/// are coloured by kind (raw, peer, switchyard).
pub(crate) fn bars(title: &str, bars: &[(String, f64, String)]) -> String {
    let row_h = 20.0;
    let longest = bars.iter().map(|b| b.0.chars().count()).max().unwrap_or(10);
    let (left, right, top) = (longest as f64 * 6.3 + 16.0, 70.0, 40.0);
    let pw = 420.0;
    let w = left + pw + right;
    let h = top + row_h * bars.len() as f64 + 40.0;
    let v_max = bars.iter().map(|b| b.1).fold(10.0_f64, f64::max);
    let v_min = 1000.0_f64;
    let (l0, l1) = (v_min.log10(), v_max.log10().ceil());
    let px = |v: f64| (v.max(v_min).log10() - l0) / (l1 - l0) * pw;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    let mut decade = l0;
    while decade <= l1 {
        let x = left + px(10_f64.powf(decade));
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            top + row_h * bars.len() as f64,
            top + row_h * bars.len() as f64 + 14.0,
            short(10_f64.powf(decade))
        );
        decade += 1.0;
    }
    for (i, (label, value, kind)) in bars.iter().enumerate() {
        let y = top + row_h * i as f64;
        let color = match kind.as_str() {
            "raw" => "#999999",
            "peer" => "#ff7f0e",
            _ => "#1f77b4",
        };
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{left}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            left - 6.0,
            y + 14.0,
            esc(label),
            y + 3.0,
            px(*value).max(1.0),
            row_h - 6.0,
            left + px(*value) + 4.0,
            y + 14.0,
            short(*value)
        );
    }
    s.push_str("</svg>\n");
    s
}
