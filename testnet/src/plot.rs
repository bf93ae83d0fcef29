//! Scenario reports as a standalone SVG figure: panels of time series stacked vertically on a
//! shared time axis, with event markers (faults, restarts, ...) drawn across all panels.
//!
//! No dependencies beyond `std`. The output is a complete SVG document (`xmlns` set) that a
//! browser opens directly. Robust to bad input: non-finite values and times are skipped, values
//! beyond ±1e300 are clamped, empty panels and series get an empty frame, and a zero, negative or
//! non-finite duration falls back to the latest time in the data (or 1 s). No coordinate or label
//! in the output is ever `NaN` or `inf`.

use std::fmt::{self, Write as _};

/// A vertical marker: something that happened at time `t_s` (seconds), e.g. "replica 0 equivocate".
#[derive(Clone, Debug, PartialEq)]
pub struct Marker {
    pub t_s: f64,
    pub label: String,
}

/// One line: points (t_s, value), drawn in time order; gaps (missing seconds) are just absent points.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A panel: a titled chart with a y-axis label and one or more series sharing that axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub title: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

/// The whole figure: a title, panels stacked vertically sharing the time axis [0, duration_s], markers drawn across all panels.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    pub title: String,
    pub duration_s: f64,
    pub panels: Vec<Panel>,
    pub markers: Vec<Marker>,
}

// ---------------------------------------------------------------------------------------------
// Geometry and style.

const WIDTH: f64 = 900.0;
const PANEL_HEIGHT: f64 = 260.0;
const PLOT_LEFT: f64 = 84.0;
const PLOT_RIGHT: f64 = WIDTH - 24.0;
/// Space for the figure title above the marker band.
const TITLE_BAND: f64 = 40.0;
const MARKER_ROW_HEIGHT: f64 = 14.0;
const MARKER_FONT: f64 = 11.0;
/// Marker labels are staggered over at most this many rows; beyond that they may overlap.
const MAX_MARKER_ROWS: usize = 8;
const LEGEND_ROW_HEIGHT: f64 = 16.0;
const LEGEND_FONT: f64 = 12.0;
/// Panel title baseline, first legend row baseline, and plot top (with one legend row), all
/// relative to the panel's top.
const PANEL_TITLE_Y: f64 = 18.0;
const PANEL_LEGEND_Y: f64 = 36.0;
const PANEL_PLOT_TOP: f64 = 50.0;
/// From the plot's bottom edge to the panel's bottom: room for the time tick labels.
const PANEL_BELOW_PLOT: f64 = 30.0;
/// Below the last panel: the time-axis title.
const TIME_TITLE_BAND: f64 = 24.0;
/// Larger magnitudes are clamped, so that ranges and pixel positions stay finite.
const VALUE_LIMIT: f64 = 1e300;
/// Series with at most this many points also get a dot per point (a single point is visible).
const DOTS_UP_TO: usize = 60;

/// Distinguishable colours (Tableau 10 without grey and olive). Series past the eighth reuse
/// them with a dash pattern.
const PALETTE: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const DASHES: [&str; 3] = ["", "7,3", "2,2"];
const MARKER_COLOUR: &str = "#555555";
/// A white outline behind text, so that marker lines crossing it do not hurt legibility.
const HALO: &str =
    " stroke=\"#ffffff\" stroke-width=\"3\" stroke-linejoin=\"round\" paint-order=\"stroke\"";

fn series_style(i: usize) -> (&'static str, &'static str) {
    let colour = PALETTE[i % PALETTE.len()];
    let dash = DASHES[(i / PALETTE.len()) % DASHES.len()];
    (colour, dash)
}

// ---------------------------------------------------------------------------------------------
// Small helpers: numbers, text.

/// A pixel coordinate, written with one decimal; never `NaN` or `inf`.
#[derive(Clone, Copy)]
struct Px(f64);

impl fmt::Display for Px {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = if self.0.is_finite() {
            self.0.clamp(-1e6, 1e6)
        } else {
            0.0
        };
        // Avoid "-0.0".
        let v = if v.abs() < 0.05 { 0.0 } else { v };
        write!(f, "{v:.1}")
    }
}

/// Appends formatted text to the output; writing to a `String` cannot fail.
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

/// Escapes XML special characters and drops characters that XML 1.0 does not allow.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 => {}
            '\u{FFFE}' | '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Cuts `s` to at most `max` characters, ending with an ellipsis if cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// A rough width estimate for sans-serif text (average glyph ≈ 0.6 em).
fn text_width(s: &str, font_px: f64) -> f64 {
    s.chars().count() as f64 * font_px * 0.6
}

fn clamp_value(v: f64) -> f64 {
    v.clamp(-VALUE_LIMIT, VALUE_LIMIT)
}

// ---------------------------------------------------------------------------------------------
// Axes: nice ticks and their labels.

/// The smallest 1, 2 or 5 × 10^k that is at least `raw` (`raw` positive and finite).
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let base = 10f64.powf(raw.log10().floor());
    if !(base.is_finite() && base > 0.0) {
        return raw;
    }
    let f = raw / base;
    let m = if f <= 1.0 + 1e-9 {
        1.0
    } else if f <= 2.0 + 1e-9 {
        2.0
    } else if f <= 5.0 + 1e-9 {
        5.0
    } else {
        10.0
    };
    m * base
}

/// An axis: its range, tick positions and how to label them.
#[derive(Clone, Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    format: TickFormat,
}

impl Axis {
    /// Maps `v` to a fraction of the axis length (0 at `lo`, 1 at `hi`).
    fn frac(&self, v: f64) -> f64 {
        let span = self.hi - self.lo;
        if span > 0.0 && span.is_finite() {
            (v - self.lo) / span
        } else {
            0.0
        }
    }
}

/// A value axis covering `[min, max]` and zero, extended to whole multiples of a nice step
/// (about five intervals). `None` (no data) gives `[0, 1]`.
fn value_axis(range: Option<(f64, f64)>) -> Axis {
    let (min, max) = range.unwrap_or((0.0, 1.0));
    let mut lo = clamp_value(min).min(0.0);
    let mut hi = clamp_value(max).max(0.0);
    if !(lo.is_finite() && hi.is_finite()) || hi - lo < 1e-250 {
        lo = 0.0;
        hi = 1.0;
    }
    let step = nice_step((hi - lo) / 5.0);
    let lo_k = (lo / step + 1e-9).floor();
    let hi_k = (hi / step - 1e-9).ceil().max(lo_k + 1.0);
    let count = ((hi_k - lo_k) as usize).min(100);
    let ticks: Vec<f64> = (0..=count)
        .map(|k| {
            let v = (lo_k + k as f64) * step;
            if v.abs() < step * 1e-6 { 0.0 } else { v }
        })
        .collect();
    let lo = lo_k * step;
    let hi = hi_k * step;
    let (lo, hi) = if lo.is_finite() && hi.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    Axis {
        lo,
        hi,
        format: TickFormat::new(lo.abs().max(hi.abs()), step),
        ticks,
    }
}

/// The time axis: exactly `[0, duration]` (duration positive and finite), ticks at multiples of
/// a nice step (about ten intervals).
fn time_axis(duration: f64) -> Axis {
    let step = nice_step(duration / 10.0);
    let count = ((duration / step + 1e-9).floor() as usize).min(100);
    let ticks = (0..=count).map(|k| k as f64 * step).collect();
    Axis {
        lo: 0.0,
        hi: duration,
        ticks,
        format: TickFormat::new(duration, step),
    }
}

/// How an axis labels its ticks: the same number of decimals for every tick, with an SI suffix
/// (k, M, G, T) for large values, or scientific notation for extreme ones.
#[derive(Clone, Debug, PartialEq)]
enum TickFormat {
    Fixed {
        decimals: usize,
        divisor: f64,
        suffix: &'static str,
    },
    Scientific {
        step: f64,
    },
}

impl TickFormat {
    fn new(max_abs: f64, step: f64) -> TickFormat {
        if !(max_abs.is_finite() && step.is_finite() && step > 0.0) {
            return TickFormat::Scientific { step: 1.0 };
        }
        if max_abs >= 1e15 || step < 1e-3 {
            return TickFormat::Scientific { step };
        }
        let (divisor, suffix) = if max_abs >= 1e12 {
            (1e12, "T")
        } else if max_abs >= 1e9 {
            (1e9, "G")
        } else if max_abs >= 1e6 {
            (1e6, "M")
        } else if max_abs >= 1e4 {
            (1e3, "k")
        } else {
            (1.0, "")
        };
        TickFormat::Fixed {
            decimals: decimals_for(step / divisor),
            divisor,
            suffix,
        }
    }

    fn label(&self, v: f64) -> String {
        if !v.is_finite() {
            return String::new();
        }
        match *self {
            TickFormat::Fixed {
                decimals,
                divisor,
                suffix,
            } => {
                let scaled = v / divisor;
                let s = format!("{scaled:.decimals$}");
                if s.trim_start_matches('-')
                    .chars()
                    .all(|c| c == '0' || c == '.')
                {
                    "0".to_string()
                } else {
                    format!("{s}{suffix}")
                }
            }
            TickFormat::Scientific { step } => {
                if v.abs() < step * 1e-6 {
                    return "0".to_string();
                }
                let digits = (v.abs().log10().floor() - step.log10().floor()).clamp(0.0, 6.0);
                let s = format!("{:.*e}", digits as usize, v);
                // Trim a mantissa like "1.50" to "1.5" and "1.0" to "1".
                match s.split_once('e') {
                    Some((mantissa, exp)) if mantissa.contains('.') => {
                        let m = mantissa.trim_end_matches('0').trim_end_matches('.');
                        format!("{m}e{exp}")
                    }
                    _ => s,
                }
            }
        }
    }
}

/// Decimals needed to tell apart multiples of `step` (a nice step).
fn decimals_for(step: f64) -> usize {
    if !(step.is_finite() && step > 0.0) || step >= 1.0 - 1e-9 {
        0
    } else {
        ((-step.log10()) - 1e-9).ceil().clamp(0.0, 12.0) as usize
    }
}

// ---------------------------------------------------------------------------------------------
// Layout of marker labels and legends.

/// A marker label's place in the staggered band above the panels.
#[derive(Clone, Debug)]
struct PlacedMarker {
    x: f64,
    row: usize,
    /// Horizontal extent of the label text.
    start: f64,
    end: f64,
    /// Text anchored at its end (left of the line) near the right edge.
    anchor_end: bool,
    text: String,
    tooltip: String,
}

/// Places marker labels (sorted by x) in rows so that no label overlaps another label or any
/// other marker's line (lines run down from their label through the rows below it). When that
/// is impossible within `MAX_MARKER_ROWS`, a label goes to the row where it collides least.
fn place_markers(markers: Vec<(f64, String, String)>) -> Vec<PlacedMarker> {
    const GAP: f64 = 6.0;
    let mut placed: Vec<PlacedMarker> = Vec::with_capacity(markers.len());
    for (x, text, tooltip) in markers {
        let w = text_width(&text, MARKER_FONT);
        let anchor_end = x + 3.0 + w > WIDTH - 4.0 && x - 3.0 - w >= 4.0;
        let (start, end) = if anchor_end {
            (x - 3.0 - w, x - 3.0)
        } else {
            (x + 3.0, x + 3.0 + w)
        };
        // Cost of putting the label in `row`: overlapping another label is much worse than a
        // line crossing a label (labels have a white halo, so a crossing line is hidden).
        let cost = |row: usize| -> usize {
            placed
                .iter()
                .map(|p| {
                    if p.row == row && p.start < end + GAP && start < p.end + GAP {
                        // Another label in the same row overlaps this one.
                        10
                    } else if (p.row > row && p.start - 2.0 <= x && x <= p.end + 2.0)
                        || (p.row < row && start - 2.0 <= p.x && p.x <= end + 2.0)
                    {
                        // This marker's line passes through a label below this row, or a line
                        // from a row above passes through this label.
                        1
                    } else {
                        0
                    }
                })
                .sum()
        };
        let row = (0..MAX_MARKER_ROWS)
            .find(|&r| cost(r) == 0)
            .or_else(|| (0..MAX_MARKER_ROWS).min_by_key(|&r| cost(r)))
            .unwrap_or(0);
        placed.push(PlacedMarker {
            x,
            row,
            start,
            end,
            anchor_end,
            text,
            tooltip,
        });
    }
    placed
}

/// Legend entries of a panel: (x of the swatch, row) for each series, flowing left to right and
/// wrapping to new rows.
fn legend_layout(names: &[String]) -> (Vec<(f64, usize)>, usize) {
    let mut x = PLOT_LEFT;
    let mut row = 0;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let w = 18.0 + 5.0 + text_width(name, LEGEND_FONT) + 16.0;
        if x > PLOT_LEFT && x + w > PLOT_RIGHT {
            row += 1;
            x = PLOT_LEFT;
        }
        out.push((x, row));
        x += w;
    }
    (out, row + 1)
}

// ---------------------------------------------------------------------------------------------
// Rendering.

/// A series prepared for drawing: finite points in time order, values clamped.
struct CleanSeries {
    name: String,
    points: Vec<(f64, f64)>,
}

fn clean_series(s: &Series) -> CleanSeries {
    let mut points: Vec<(f64, f64)> = s
        .points
        .iter()
        .filter(|(t, v)| t.is_finite() && v.is_finite())
        .map(|&(t, v)| (t, clamp_value(v)))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    CleanSeries {
        name: truncate(&s.name, 48),
        points,
    }
}

/// Duration of the time axis: `duration_s` if positive and finite, else the latest finite time
/// among points and markers, else 1 s.
fn effective_duration(fig: &Figure) -> f64 {
    let ok = |d: f64| d.is_finite() && d > 1e-9 && d <= VALUE_LIMIT;
    if ok(fig.duration_s) {
        return fig.duration_s;
    }
    let latest = fig
        .panels
        .iter()
        .flat_map(|p| p.series.iter())
        .flat_map(|s| s.points.iter().map(|&(t, _)| t))
        .chain(fig.markers.iter().map(|m| m.t_s))
        .filter(|t| t.is_finite())
        .fold(0.0_f64, f64::max);
    if ok(latest) { latest } else { 1.0 }
}

impl Figure {
    /// Renders the figure as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let duration = effective_duration(self);
        let time = time_axis(duration);
        let x_of = |t: f64| PLOT_LEFT + time.frac(t) * (PLOT_RIGHT - PLOT_LEFT);

        // Markers inside the time axis, in time order, with staggered labels.
        let mut markers: Vec<&Marker> = self
            .markers
            .iter()
            .filter(|m| m.t_s.is_finite() && m.t_s >= 0.0 && m.t_s <= duration * (1.0 + 1e-9))
            .collect();
        markers.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
        let placed = place_markers(
            markers
                .iter()
                .map(|m| {
                    let tooltip = format!("t = {} s: {}", fmt_seconds(m.t_s), m.label);
                    (x_of(m.t_s), truncate(&m.label, 60), tooltip)
                })
                .collect(),
        );
        let marker_rows = placed.iter().map(|p| p.row + 1).max().unwrap_or(0);
        let band_top = TITLE_BAND;
        let band_height = if marker_rows > 0 {
            marker_rows as f64 * MARKER_ROW_HEIGHT + 8.0
        } else {
            0.0
        };

        // Panel geometry.
        struct Layout {
            top: f64,
            plot_top: f64,
            plot_bottom: f64,
            series: Vec<CleanSeries>,
            legend: Vec<(f64, usize)>,
        }
        let mut layouts = Vec::with_capacity(self.panels.len());
        let mut y = band_top + band_height;
        for panel in &self.panels {
            let series: Vec<CleanSeries> = panel.series.iter().map(clean_series).collect();
            let names: Vec<String> = series.iter().map(|s| s.name.clone()).collect();
            let (legend, rows) = legend_layout(&names);
            let extra = (rows.saturating_sub(1)) as f64 * LEGEND_ROW_HEIGHT;
            let height = PANEL_HEIGHT + extra;
            layouts.push(Layout {
                top: y,
                plot_top: y + PANEL_PLOT_TOP + extra,
                plot_bottom: y + height - PANEL_BELOW_PLOT,
                series,
                legend,
            });
            y += height;
        }
        let total_height = if self.panels.is_empty() {
            y + 16.0
        } else {
            y + TIME_TITLE_BAND
        };

        let mut out = String::new();
        put!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{w}\" height=\"{h}\" \
             viewBox=\"0 0 {w} {h}\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n",
            w = Px(WIDTH),
            h = Px(total_height)
        );
        put!(out, "<title>{}</title>\n", esc(&self.title));
        put!(
            out,
            "<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>\n",
            Px(WIDTH),
            Px(total_height)
        );
        // Clip paths: series lines stay inside their plot area.
        out.push_str("<defs>\n");
        for (i, l) in layouts.iter().enumerate() {
            put!(
                out,
                "<clipPath id=\"quire-plot-clip-{i}\"><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/></clipPath>\n",
                Px(PLOT_LEFT - 3.0),
                Px(l.plot_top - 3.0),
                Px(PLOT_RIGHT - PLOT_LEFT + 6.0),
                Px(l.plot_bottom - l.plot_top + 6.0)
            );
        }
        out.push_str("</defs>\n");
        put!(
            out,
            "<text x=\"{}\" y=\"26\" font-size=\"18\" font-weight=\"bold\" fill=\"#111111\">{}</text>\n",
            Px(PLOT_LEFT),
            esc(&truncate(&self.title, 80))
        );

        // Marker lines first, so that data and text are drawn over them.
        let lines_bottom = layouts
            .last()
            .map(|l| l.plot_bottom)
            .unwrap_or(band_top + band_height);
        out.push_str("<g class=\"markers\">\n");
        for p in &placed {
            let baseline = band_top + (p.row + 1) as f64 * MARKER_ROW_HEIGHT;
            put!(
                out,
                "<g><title>{tip}</title><line x1=\"{x}\" y1=\"{y1}\" x2=\"{x}\" y2=\"{y2}\" stroke=\"{c}\" \
                 stroke-width=\"1\" stroke-dasharray=\"5,4\" stroke-opacity=\"0.75\"/>\
                 <text x=\"{tx}\" y=\"{ty}\" font-size=\"{MARKER_FONT}\" fill=\"#333333\"{HALO}{anchor}>{label}</text></g>\n",
                tip = esc(&p.tooltip),
                x = Px(p.x),
                y1 = Px(baseline - 10.0),
                y2 = Px(lines_bottom),
                c = MARKER_COLOUR,
                tx = Px(if p.anchor_end { p.end } else { p.start }),
                ty = Px(baseline),
                anchor = if p.anchor_end {
                    " text-anchor=\"end\""
                } else {
                    ""
                },
                label = esc(&p.text),
            );
        }
        out.push_str("</g>\n");

        for (i, (panel, l)) in self.panels.iter().zip(&layouts).enumerate() {
            render_panel(
                &mut out,
                i,
                panel,
                l.top,
                l.plot_top,
                l.plot_bottom,
                &l.series,
                &l.legend,
                &time,
                &x_of,
            );
        }

        if let Some(last) = layouts.last() {
            put!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#333333\">time (s)</text>\n",
                Px((PLOT_LEFT + PLOT_RIGHT) / 2.0),
                Px(last.plot_bottom + 36.0)
            );
        } else {
            put!(
                out,
                "<text x=\"{}\" y=\"{}\" fill=\"#777777\">(no panels)</text>\n",
                Px(PLOT_LEFT),
                Px(total_height - 8.0)
            );
        }
        out.push_str("</svg>\n");
        out
    }
}

/// Seconds for a tooltip: up to three decimals, trailing zeros trimmed.
fn fmt_seconds(t: f64) -> String {
    let s = format!("{t:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[allow(clippy::too_many_arguments)]
fn render_panel(
    out: &mut String,
    index: usize,
    panel: &Panel,
    top: f64,
    plot_top: f64,
    plot_bottom: f64,
    series: &[CleanSeries],
    legend: &[(f64, usize)],
    time: &Axis,
    x_of: &dyn Fn(f64) -> f64,
) {
    // Value range over the points inside the time axis (points outside are clipped anyway).
    let in_time = |t: f64| t >= time.lo - 1e-9 * time.hi && t <= time.hi * (1.0 + 1e-9);
    let range = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(t, _)| in_time(*t))
        .fold(None, |acc: Option<(f64, f64)>, &(_, v)| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        });
    let has_data = range.is_some();
    let values = value_axis(range);
    let y_of = |v: f64| plot_bottom - values.frac(v) * (plot_bottom - plot_top);

    put!(out, "<g class=\"panel\" id=\"quire-panel-{index}\">\n");
    put!(
        out,
        "<text x=\"{}\" y=\"{}\" font-size=\"14\" font-weight=\"bold\" fill=\"#111111\">{}</text>\n",
        Px(PLOT_LEFT),
        Px(top + PANEL_TITLE_Y),
        esc(&truncate(&panel.title, 100))
    );

    // Grid and tick labels.
    for &v in &values.ticks {
        let y = y_of(v);
        let stroke = if v == 0.0 && values.lo < 0.0 {
            "#999999"
        } else {
            "#e6e6e6"
        };
        put!(
            out,
            "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{stroke}\" stroke-width=\"1\"/>\n",
            Px(PLOT_LEFT),
            Px(PLOT_RIGHT),
            y = Px(y)
        );
        put!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"#333333\">{}</text>\n",
            Px(PLOT_LEFT - 6.0),
            Px(y + 4.0),
            esc(&values.format.label(v))
        );
    }
    for &t in &time.ticks {
        let x = x_of(t);
        put!(
            out,
            "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#f0f0f0\" stroke-width=\"1\"/>\n",
            Px(plot_top),
            Px(plot_bottom),
            x = Px(x)
        );
        put!(
            out,
            "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#333333\" stroke-width=\"1\"/>\n",
            Px(plot_bottom),
            Px(plot_bottom + 4.0),
            x = Px(x)
        );
        put!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#333333\">{}</text>\n",
            Px(x),
            Px(plot_bottom + 16.0),
            esc(&time.format.label(t))
        );
    }
    // Axes.
    put!(
        out,
        "<path d=\"M{l} {t} L{l} {b} L{r} {b}\" fill=\"none\" stroke=\"#333333\" stroke-width=\"1\"/>\n",
        l = Px(PLOT_LEFT),
        t = Px(plot_top),
        b = Px(plot_bottom),
        r = Px(PLOT_RIGHT)
    );
    put!(
        out,
        "<text transform=\"translate({},{}) rotate(-90)\" text-anchor=\"middle\" fill=\"#333333\">{}</text>\n",
        Px(18.0),
        Px((plot_top + plot_bottom) / 2.0),
        esc(&truncate(&panel.y_label, 40))
    );

    // Series.
    for (i, s) in series.iter().enumerate() {
        let (colour, dash) = series_style(i);
        let dash_attr = if dash.is_empty() {
            String::new()
        } else {
            format!(" stroke-dasharray=\"{dash}\"")
        };
        if s.points.len() >= 2 {
            put!(
                out,
                "<polyline clip-path=\"url(#quire-plot-clip-{index})\" fill=\"none\" stroke=\"{colour}\" \
                 stroke-width=\"1.8\" stroke-linejoin=\"round\" stroke-linecap=\"round\"{dash_attr} points=\""
            );
            for (k, &(t, v)) in s.points.iter().enumerate() {
                if k > 0 {
                    out.push(' ');
                }
                put!(out, "{},{}", Px(x_of(t)), Px(y_of(v)));
            }
            out.push_str("\"/>\n");
        }
        if !s.points.is_empty() && s.points.len() <= DOTS_UP_TO {
            put!(
                out,
                "<g clip-path=\"url(#quire-plot-clip-{index})\" fill=\"{colour}\">"
            );
            for &(t, v) in &s.points {
                put!(
                    out,
                    "<circle cx=\"{}\" cy=\"{}\" r=\"2.5\"/>",
                    Px(x_of(t)),
                    Px(y_of(v))
                );
            }
            out.push_str("</g>\n");
        }
    }
    if !has_data {
        put!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\" fill=\"#999999\"{HALO}>no data</text>\n",
            Px((PLOT_LEFT + PLOT_RIGHT) / 2.0),
            Px((plot_top + plot_bottom) / 2.0 + 4.0)
        );
    }

    // Legend.
    for (i, (s, &(x, row))) in series.iter().zip(legend).enumerate() {
        let (colour, dash) = series_style(i);
        let y = top + PANEL_LEGEND_Y + row as f64 * LEGEND_ROW_HEIGHT;
        let dash_attr = if dash.is_empty() {
            String::new()
        } else {
            format!(" stroke-dasharray=\"{dash}\"")
        };
        put!(
            out,
            "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{colour}\" stroke-width=\"3\"{dash_attr}/>\
             <text x=\"{}\" y=\"{}\" font-size=\"{LEGEND_FONT}\" fill=\"#222222\"{HALO}>{}</text>\n",
            Px(x),
            Px(x + 18.0),
            Px(x + 23.0),
            Px(y),
            esc(&s.name),
            ly = Px(y - 4.0),
        );
    }
    out.push_str("</g>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.to_string(),
            points,
        }
    }

    fn panel(title: &str, y_label: &str, series: Vec<Series>) -> Panel {
        Panel {
            title: title.to_string(),
            y_label: y_label.to_string(),
            series,
        }
    }

    fn marker(t_s: f64, label: &str) -> Marker {
        Marker {
            t_s,
            label: label.to_string(),
        }
    }

    fn assert_clean(svg: &str) {
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(!svg.contains("NaN"), "NaN in {svg}");
        assert!(!svg.to_lowercase().contains("inf"), "inf in {svg}");
    }

    /// A rough well-formedness check: tags balance (self-closing tags aside) and no raw `&`
    /// that does not start an entity.
    fn assert_balanced(svg: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = svg;
        while let Some(open) = rest.find('<') {
            let Some(close) = rest[open..].find('>') else {
                panic!("unclosed tag");
            };
            let tag = &rest[open + 1..open + close];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            } else if !tag.ends_with('/') {
                let name = tag.split_whitespace().next().unwrap_or("").to_string();
                stack.push(name);
            }
            rest = &rest[open + close + 1..];
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        for (i, _) in svg.match_indices('&') {
            let ent = &svg[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                    .iter()
                    .any(|e| ent.starts_with(e)),
                "raw & at {i}"
            );
        }
    }

    fn sample() -> Figure {
        let n = 120;
        let commits: Vec<(f64, f64)> = (0..=n)
            .filter(|t| !(46..52).contains(t))
            .map(|t| {
                let t = t as f64;
                let base = if (40.0..60.0).contains(&t) {
                    350.0
                } else {
                    1200.0
                };
                (t, base + 80.0 * (t * 0.7).sin())
            })
            .collect();
        let offered: Vec<(f64, f64)> = (0..=n).map(|t| (t as f64, 1300.0)).collect();
        let lat = |scale: f64| -> Vec<(f64, f64)> {
            (0..=n)
                .map(|t| {
                    let t = t as f64;
                    let bump = if (40.0..62.0).contains(&t) {
                        900.0
                    } else {
                        0.0
                    };
                    (t, scale * (40.0 + 6.0 * (t * 0.3).cos()) + bump * scale)
                })
                .collect()
        };
        let views: Vec<(f64, f64)> = (0..=n)
            .map(|t| {
                (
                    t as f64,
                    if t < 41 {
                        1.0
                    } else if t < 55 {
                        2.0
                    } else {
                        3.0
                    },
                )
            })
            .collect();
        Figure {
            title: "scenario: equivocating leader <n=4, f=1> & recovery".to_string(),
            duration_s: n as f64,
            panels: vec![
                panel(
                    "Throughput",
                    "tx/s",
                    vec![series("committed", commits), series("offered", offered)],
                ),
                panel(
                    "Commit latency",
                    "ms",
                    vec![
                        series("p50", lat(1.0)),
                        series("p90", lat(1.6)),
                        series("p99", lat(2.4)),
                    ],
                ),
                panel(
                    "View per replica",
                    "view",
                    (0..10)
                        .map(|r| {
                            series(
                                &format!("replica {r}"),
                                views
                                    .iter()
                                    .map(|&(t, v)| (t, v + r as f64 * 0.05))
                                    .collect(),
                            )
                        })
                        .collect(),
                ),
                panel("Nothing here", "count", vec![series("empty", vec![])]),
                panel(
                    "Huge values",
                    "bytes",
                    vec![series(
                        "stored",
                        (0..=n).map(|t| (t as f64, t as f64 * 3.3e9)).collect(),
                    )],
                ),
            ],
            markers: vec![
                marker(40.0, "replica 0 equivocate"),
                marker(41.0, "replica 2 crash"),
                marker(41.5, "view change"),
                marker(55.0, "replica 2 restart"),
                marker(60.0, "partition {0,1} | {2,3} heals"),
                marker(118.0, "end of load"),
            ],
        }
    }

    #[test]
    fn plot_svg_has_titles_and_is_clean() {
        let fig = sample();
        let svg = fig.to_svg();
        assert_clean(&svg);
        assert_balanced(&svg);
        assert!(svg.contains("Throughput"));
        assert!(svg.contains("Commit latency"));
        assert!(svg.contains("replica 0 equivocate"));
        assert!(svg.contains("scenario: equivocating leader &lt;n=4, f=1&gt; &amp; recovery"));
        assert!(svg.contains(">tx/s<"));
        assert!(svg.contains(">time (s)<"));
        // SI suffixes on the huge panel.
        assert!(svg.contains(">400G<"), "{svg}");
    }

    #[test]
    fn plot_escapes_text() {
        let fig = Figure {
            title: "a < b & c".to_string(),
            duration_s: 10.0,
            panels: vec![panel(
                "<script>alert('x')</script>",
                "\"quoted\" & more",
                vec![series("s<1>&\u{1}", vec![(1.0, 2.0)])],
            )],
            markers: vec![marker(5.0, "a&b<c>")],
        };
        let svg = fig.to_svg();
        assert_clean(&svg);
        assert_balanced(&svg);
        assert!(svg.contains("a &lt; b &amp; c"));
        assert!(svg.contains("&lt;script&gt;alert(&apos;x&apos;)&lt;/script&gt;"));
        assert!(svg.contains("&quot;quoted&quot; &amp; more"));
        assert!(svg.contains("s&lt;1&gt;&amp;<"));
        assert!(svg.contains("a&amp;b&lt;c&gt;"));
        assert!(!svg.contains("<script"));
        assert!(!svg.contains('\u{1}'));
    }

    #[test]
    fn plot_edge_cases_are_clean() {
        let weird = vec![
            (f64::NAN, 1.0),
            (1.0, f64::NAN),
            (2.0, f64::INFINITY),
            (f64::NEG_INFINITY, 3.0),
            (3.0, f64::MAX),
            (4.0, -f64::MAX),
            (5.0, f64::MIN_POSITIVE),
            (6.0, 5e-324),
        ];
        let panels = vec![
            panel("no series", "", vec![]),
            panel(
                "empty series",
                "y",
                vec![series("a", vec![]), series("b", vec![])],
            ),
            panel("single point", "y", vec![series("one", vec![(3.0, 7.0)])]),
            panel(
                "all zero",
                "y",
                vec![series("z", vec![(0.0, 0.0), (1.0, 0.0), (2.0, 0.0)])],
            ),
            panel(
                "negative",
                "y",
                vec![series("n", vec![(0.0, -3.0), (1.0, -1.0)])],
            ),
            panel(
                "huge",
                "y",
                vec![series("h", vec![(0.0, 1e200), (1.0, 3e250)])],
            ),
            panel(
                "tiny",
                "y",
                vec![series("t", vec![(0.0, 1e-200), (1.0, 3e-201)])],
            ),
            panel("weird", "y", vec![series("w", weird.clone())]),
            panel("only nan", "y", vec![series("w", vec![(1.0, f64::NAN)])]),
            panel(
                "out of time",
                "y",
                vec![series("o", vec![(-5.0, 1.0), (1e9, 2.0)])],
            ),
        ];
        let markers = vec![
            marker(f64::NAN, "nan marker"),
            marker(f64::INFINITY, "inf marker"),
            marker(-1.0, "before"),
            marker(0.0, "start"),
            marker(1.0, ""),
        ];
        for duration_s in [
            0.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            1e-12,
            1e-3,
            1.0,
            7.0,
            1e12,
            1e300,
        ] {
            let fig = Figure {
                title: String::new(),
                duration_s,
                panels: panels.clone(),
                markers: markers.clone(),
            };
            let svg = fig.to_svg();
            assert_clean(&svg);
            assert_balanced(&svg);
            assert!(svg.contains("single point"));
        }
        for fig in [
            Figure {
                title: "empty".to_string(),
                duration_s: 0.0,
                panels: vec![],
                markers: vec![],
            },
            Figure {
                title: "markers only".to_string(),
                duration_s: 0.0,
                panels: vec![],
                markers: vec![marker(3.0, "x"), marker(3.0, "y")],
            },
            Figure {
                title: "many markers".to_string(),
                duration_s: 10.0,
                panels: vec![panel(
                    "p",
                    "y",
                    vec![series("s", vec![(0.0, 1.0), (10.0, 2.0)])],
                )],
                markers: (0..200)
                    .map(|i| marker(i as f64 * 0.05, "same-ish time"))
                    .collect(),
            },
        ] {
            let svg = fig.to_svg();
            assert_clean(&svg);
            assert_balanced(&svg);
        }
    }

    #[test]
    fn plot_nice_ticks() {
        let labels =
            |a: &Axis| -> Vec<String> { a.ticks.iter().map(|&v| a.format.label(v)).collect() };

        let a = value_axis(Some((0.0, 97.0)));
        assert_eq!((a.lo, a.hi), (0.0, 100.0));
        assert_eq!(labels(&a), ["0", "20", "40", "60", "80", "100"]);

        let a = value_axis(Some((3.0, 3.0)));
        assert_eq!(labels(&a), ["0", "1", "2", "3"]);

        let a = value_axis(Some((0.0, 0.0)));
        assert_eq!(labels(&a), ["0", "0.2", "0.4", "0.6", "0.8", "1.0"]);

        let a = value_axis(Some((-3.2, 7.9)));
        assert_eq!(labels(&a), ["-5", "0", "5", "10"]);

        let a = value_axis(Some((0.0, 0.013)));
        assert_eq!(labels(&a), ["0", "0.005", "0.010", "0.015"]);

        let a = value_axis(Some((0.0, 2.4e6)));
        assert_eq!(labels(&a), ["0", "0.5M", "1.0M", "1.5M", "2.0M", "2.5M"]);

        let a = value_axis(Some((0.0, 37_000.0)));
        assert_eq!(labels(&a), ["0", "10k", "20k", "30k", "40k"]);

        let a = value_axis(Some((0.0, 3e18)));
        assert_eq!(labels(&a), ["0", "1e18", "2e18", "3e18"]);

        let a = value_axis(Some((0.0, 2e-5)));
        assert_eq!(labels(&a), ["0", "5e-6", "1e-5", "1.5e-5", "2e-5"]);

        let t = time_axis(120.0);
        assert_eq!(labels(&t), ["0", "20", "40", "60", "80", "100", "120"]);
        let t = time_axis(95.0);
        assert_eq!(
            labels(&t),
            ["0", "10", "20", "30", "40", "50", "60", "70", "80", "90"]
        );
        assert_eq!(t.hi, 95.0);
        let t = time_axis(1.0);
        assert_eq!(labels(&t).len(), 11);
        assert_eq!(labels(&t)[10], "1.0");
        let t = time_axis(3600.0);
        assert_eq!(
            labels(&t),
            ["0", "500", "1000", "1500", "2000", "2500", "3000", "3500"]
        );

        for raw in [0.7, 1.0, 1.3, 2.0, 2.2, 4.9, 5.0, 7.0, 0.03, 123.0, 9e12] {
            let s = nice_step(raw);
            assert!(s >= raw * (1.0 - 1e-12), "{raw} -> {s}");
            assert!(s < raw * 10.0);
            let m = s / 10f64.powf(s.log10().floor());
            assert!(
                [1.0, 2.0, 5.0, 10.0].iter().any(|x| (m - x).abs() < 1e-9),
                "{raw} -> {s}"
            );
        }
    }

    #[test]
    fn plot_marker_labels_do_not_collide() {
        let check = |xs: &[f64], lines_may_cross: bool| {
            let placed = place_markers(
                xs.iter()
                    .map(|&x| (x, "replica 0 equivocate".to_string(), String::new()))
                    .collect(),
            );
            for (i, a) in placed.iter().enumerate() {
                assert!(a.start >= 0.0 && a.end <= WIDTH, "{a:?}");
                for (j, b) in placed.iter().enumerate() {
                    if i == j {
                        continue;
                    }
                    if a.row == b.row {
                        assert!(a.end <= b.start || b.end <= a.start, "{a:?} {b:?}");
                    }
                    if b.row > a.row && !lines_may_cross {
                        assert!(
                            !(b.start <= a.x && a.x <= b.end),
                            "{a:?} line crosses {b:?}"
                        );
                    }
                }
            }
            placed
        };
        let placed = check(&[100.0, 102.0, 104.0, 104.0, 300.0, 500.0], false);
        assert_eq!(
            placed.iter().map(|p| p.row).collect::<Vec<_>>(),
            [0, 1, 2, 3, 0, 0]
        );
        // Near the right edge labels flip to the left of their line.
        let placed = check(&[600.0, 800.0, 870.0], true);
        assert!(placed[1].anchor_end && placed[2].anchor_end);
    }

    #[test]
    fn plot_render_sample() {
        let svg = sample().to_svg();
        assert_clean(&svg);
        let path = std::env::temp_dir().join("plot-sample.svg");
        std::fs::write(&path, &svg).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}
