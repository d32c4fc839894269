//! The demo page's charts, as inline SVG: a line chart (one path per keyword) and a horizontal bar chart. Axis
//! labels are `<text>` elements with classes, so a headless browser test can read them back.

use std::fmt::Write as _;

use super::render::COLOURS;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 50.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 50.0;

/// A line chart: `x` labels, and per series a value for each.
pub struct LineChart<'a> {
    pub id: &'a str,
    pub title: &'a str,
    /// Each series' path is `<series_id>-<name>`.
    pub series_id: &'a str,
    /// Appended to the axis labels' classes (`y-label`, `x-label`), so that charts can be told apart.
    pub label_class: &'a str,
    pub x: Vec<String>,
    pub series: Vec<(String, Vec<u64>)>,
}

pub fn line_chart(chart: &LineChart<'_>) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let max = chart
        .series
        .iter()
        .flat_map(|(_, values)| values.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let y_max = nice_ceiling(max);
    let n = chart.x.len();
    let x = |i: usize| {
        if n <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: u64| TOP + plot_h * (1.0 - v as f64 / y_max as f64);
    let mut svg = open(chart.id, chart.title, HEIGHT);
    y_axis(&mut svg, y_max, chart.label_class, &y);
    // X axis: at most about 12 labels.
    let every = n.div_ceil(12).max(1);
    let _ = writeln!(svg, "<g class=\"x-axis\" font-size=\"12\" fill=\"#444\">");
    let _ = writeln!(
        svg,
        "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#888\"/>",
        WIDTH - RIGHT,
        TOP + plot_h,
        TOP + plot_h
    );
    for (i, label) in chart.x.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let _ = writeln!(
            svg,
            "<text class=\"x-label{}\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            chart.label_class,
            x(i),
            TOP + plot_h + 20.0,
            escape(label)
        );
    }
    let _ = writeln!(svg, "</g>");
    for (k, (name, values)) in chart.series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let points: Vec<(f64, f64)> = values.iter().enumerate().map(|(i, v)| (x(i), y(*v))).collect();
        let d: String = points
            .iter()
            .enumerate()
            .map(|(i, (px, py))| format!("{}{px:.1},{py:.1}", if i == 0 { "M" } else { " L" }))
            .collect();
        let _ = writeln!(
            svg,
            "<g class=\"series\" data-keyword=\"{kw}\"><path id=\"{id}-{kw}\" d=\"{d}\" fill=\"none\" \
             stroke=\"{colour}\" stroke-width=\"3\"/>",
            id = chart.series_id,
            kw = escape(name)
        );
        for (px, py) in &points {
            let _ = writeln!(svg, "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"4\" fill=\"{colour}\"/>");
        }
        let _ = writeln!(svg, "</g>");
    }
    svg.push_str("</svg>\n");
    svg
}

/// Horizontal bars, one per `(label, value)`, longest first as given; each bar is `<rect class="bar">` with its
/// label and value as text.
pub fn bar_chart(id: &str, title: &str, bars: &[(String, u64)]) -> String {
    const ROW: f64 = 28.0;
    let label_w = 180.0;
    let height = TOP + ROW * bars.len().max(1) as f64 + BOTTOM / 2.0;
    let plot_w = WIDTH - label_w - RIGHT;
    let max = bars.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let mut svg = open(id, title, height);
    for (i, (label, value)) in bars.iter().enumerate() {
        let top = TOP + ROW * i as f64;
        let w = plot_w * *value as f64 / max as f64;
        let _ = writeln!(
            svg,
            "<g font-size=\"12\" fill=\"#444\"><text class=\"bar-label\" x=\"{:.1}\" y=\"{:.1}\" \
             text-anchor=\"end\">{}</text><rect class=\"bar\" data-label=\"{}\" x=\"{label_w}\" y=\"{top:.1}\" \
             width=\"{w:.1}\" height=\"{:.1}\" fill=\"{}\"/><text class=\"bar-value\" x=\"{:.1}\" y=\"{:.1}\">{value}</text></g>",
            label_w - 8.0,
            top + ROW * 0.6,
            escape(label),
            escape(label),
            ROW * 0.7,
            COLOURS[0],
            label_w + w + 6.0,
            top + ROW * 0.6,
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The `<svg>` element of a chart `height` high, on a white background.
fn open(id: &str, title: &str, height: f64) -> String {
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-label=\"{}\">",
        escape(title)
    );
    let _ = writeln!(
        svg,
        "<rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{height}\" fill=\"#ffffff\"/>"
    );
    svg
}

/// Five gridlines with their values, and the axis title.
fn y_axis(svg: &mut String, y_max: u64, label_class: &str, y: &dyn Fn(u64) -> f64) {
    let plot_h = HEIGHT - TOP - BOTTOM;
    let _ = writeln!(svg, "<g class=\"y-axis\" font-size=\"12\" fill=\"#444\">");
    for step in 0..=4u64 {
        let value = y_max * step / 4;
        let py = y(value);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"#e0e0e0\"/>\
             <text class=\"y-label{label_class}\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{value}</text>",
            WIDTH - RIGHT,
            LEFT - 8.0,
            py + 4.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"16\" y=\"{:.1}\" transform=\"rotate(-90 16 {:.1})\" text-anchor=\"middle\">mentions</text></g>",
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
}

/// A round top for the y axis, divisible by 4 so that the five gridlines fall on round numbers: the smallest
/// multiple of 4 * 10^k at or above `value`, with k chosen so that it takes at most 10 such steps.
fn nice_ceiling(value: u64) -> u64 {
    let mut step = 4u64;
    while value.div_ceil(step) > 10 {
        step = step.saturating_mul(10);
    }
    value.div_ceil(step).max(1).saturating_mul(step)
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
