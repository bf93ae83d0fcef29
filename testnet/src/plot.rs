//! Scenario reports as a standalone SVG figure: panels of time series stacked vertically on a
//! shared time axis, with event markers (faults, restarts, ...) drawn across all panels.
//!
//! Drawn with `plotters` (its SVG backend only: text is emitted as SVG `<text>`, so no font
//! files or system libraries are needed). What is ours is the layout of the figure: the panels
//! share one time axis, the markers' labels are staggered in a band above them so that they do
//! not overlap, and every panel's legend sits right of its plot. Robust to bad input: non-finite
//! values and times are skipped, values beyond ±1e300 are clamped, empty panels and series get an
//! empty frame, and a zero, negative or non-finite duration falls back to the latest time in the
//! data (or 1 s). No coordinate or label in the output is ever `NaN` or `inf`.

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

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
// Geometry and style (pixels).

const WIDTH: u32 = 900;
const PANEL_HEIGHT: u32 = 260;
const PLOT_LEFT: u32 = 84;
/// Right of the plot: the legend.
const PLOT_RIGHT: u32 = WIDTH - 170;
/// Space for the figure title above the marker band.
const TITLE_BAND: u32 = 40;
const MARKER_ROW_HEIGHT: u32 = 14;
const MARKER_FONT: f64 = 11.0;
/// Marker labels are staggered over at most this many rows; beyond that they may overlap.
const MAX_MARKER_ROWS: usize = 8;
/// Below a panel's plot: its time tick labels; below the last, the time axis title too.
const TICKS_BELOW_PLOT: u32 = 26;
const TIME_TITLE_BAND: u32 = 24;
/// Larger magnitudes are clamped, so that ranges and pixel positions stay finite.
const VALUE_LIMIT: f64 = 1e300;
/// Series with at most this many points also get a dot per point (a single point is visible).
const DOTS_UP_TO: usize = 60;
/// Legend names are cut to fit right of the plot.
const LEGEND_CHARS: usize = 22;

/// Distinguishable colours (Tableau 10 without grey and olive). Series past the eighth reuse
/// them dashed.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];
const MARKER_COLOUR: RGBColor = RGBColor(0x55, 0x55, 0x55);
const TEXT_COLOUR: RGBColor = RGBColor(0x22, 0x22, 0x22);

type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// A sans-serif font of `px` pixels (plotters writes `font-size` as its size / 1.24).
fn font(px: f64) -> FontDesc<'static> {
    ("sans-serif", px * 1.24).into_font()
}

// ---------------------------------------------------------------------------------------------
// Text and numbers.

/// Cuts `s` to at most `max` characters (ending with an ellipsis if cut) and drops characters
/// that XML 1.0 does not allow. Plotters escapes `<`, `>`, `&` and quotes itself.
fn clean_text(s: &str, max: usize) -> String {
    let allowed = |c: &char| {
        ((*c as u32) >= 0x20 || matches!(c, '\t' | '\n' | '\r'))
            && !matches!(c, '\u{FFFE}' | '\u{FFFF}')
    };
    let mut t: String = s
        .chars()
        .filter(allowed)
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    if t.chars().count() > max {
        t = t.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
    }
    t
}

/// Escapes XML special characters, for the text we write outside plotters (the `<title>`).
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in clean_text(s, 200).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A rough width estimate for sans-serif text (average glyph ≈ 0.6 em).
fn text_width(s: &str, font_px: f64) -> f64 {
    s.chars().count() as f64 * font_px * 0.6
}

/// A tick label on an axis whose largest magnitude is `max_abs`: an SI suffix (k, M, G, T) for
/// large axes, scientific notation for extreme ones, and enough decimals to tell ticks apart.
fn tick_label(v: f64, max_abs: f64) -> String {
    if !(v.is_finite() && max_abs.is_finite()) {
        return String::new();
    }
    if v.abs() < max_abs * 1e-9 || v == 0.0 {
        return "0".to_string();
    }
    let trim = |s: String| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if !(1e-3..1e15).contains(&max_abs) {
        let s = format!("{v:.3e}");
        return match s.split_once('e') {
            Some((mantissa, exp)) => format!("{}e{exp}", trim(mantissa.to_string())),
            None => s,
        };
    }
    let (divisor, suffix) = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|(d, _)| max_abs >= *d * 10.0 || (*d >= 1e6 && max_abs >= *d))
        .unwrap_or((1.0, ""));
    let decimals = (3.0 - (max_abs / divisor).log10().floor()).clamp(0.0, 12.0) as usize;
    format!("{}{suffix}", trim(format!("{:.decimals$}", v / divisor)))
}

// ---------------------------------------------------------------------------------------------
// Layout of marker labels.

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
}

/// Places marker labels (sorted by x) in rows so that no label overlaps another label or any
/// other marker's line (lines run down from their label through the rows below it). When that
/// is impossible within `MAX_MARKER_ROWS`, a label goes to the row where it collides least.
fn place_markers(markers: Vec<(f64, String)>) -> Vec<PlacedMarker> {
    const GAP: f64 = 6.0;
    let width = f64::from(WIDTH);
    let mut placed: Vec<PlacedMarker> = Vec::with_capacity(markers.len());
    for (x, text) in markers {
        let w = text_width(&text, MARKER_FONT);
        let anchor_end = x + 3.0 + w > width - 4.0 && x - 3.0 - w >= 4.0;
        let (start, end) = if anchor_end {
            (x - 3.0 - w, x - 3.0)
        } else {
            (x + 3.0, x + 3.0 + w)
        };
        // Cost of putting the label in `row`: overlapping another label is much worse than a
        // line crossing a label (labels have a white background, so a crossing line is hidden).
        let cost = |row: usize| -> usize {
            placed
                .iter()
                .map(|p| {
                    if p.row == row && p.start < end + GAP && start < p.end + GAP {
                        10
                    } else if (p.row > row && p.start - 2.0 <= x && x <= p.end + 2.0)
                        || (p.row < row && start - 2.0 <= p.x && p.x <= end + 2.0)
                    {
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
        });
    }
    placed
}

// ---------------------------------------------------------------------------------------------
// Data preparation.

/// A series prepared for drawing: finite points inside the time axis, in time order, values
/// clamped (points outside the axis would be drawn outside the plot).
struct CleanSeries {
    name: String,
    points: Vec<(f64, f64)>,
}

fn clean_series(s: &Series, duration: f64) -> CleanSeries {
    // Plotters clamps what falls outside the plot to its edge: leave it out instead.
    let inside = |t: f64| t >= 0.0 && t <= duration * (1.0 + 1e-9);
    let mut points: Vec<(f64, f64)> = s
        .points
        .iter()
        .filter(|(t, v)| t.is_finite() && v.is_finite() && inside(*t))
        .map(|&(t, v)| (t, v.clamp(-VALUE_LIMIT, VALUE_LIMIT)))
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    CleanSeries {
        name: clean_text(&s.name, LEGEND_CHARS),
        points,
    }
}

/// The value range of a panel: its data and zero, with a little room above (and below, if
/// negative); `None` when there is no data.
fn value_range(series: &[CleanSeries]) -> Option<(f64, f64)> {
    let (lo, hi) = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(None, |acc: Option<(f64, f64)>, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })?;
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    let span = hi - lo;
    if !(span.is_finite() && span > 1e-250) {
        return Some((0.0, 1.0));
    }
    let pad = span * 0.05;
    Some((if lo < 0.0 { lo - pad } else { lo }, hi + pad))
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

// ---------------------------------------------------------------------------------------------
// Drawing.

impl Figure {
    /// Renders the figure as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let duration = effective_duration(self);
        let x_of = |t: f64| f64::from(PLOT_LEFT) + t / duration * f64::from(PLOT_RIGHT - PLOT_LEFT);
        let mut markers: Vec<&Marker> = self
            .markers
            .iter()
            .filter(|m| m.t_s.is_finite() && m.t_s >= 0.0 && m.t_s <= duration * (1.0 + 1e-9))
            .collect();
        markers.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
        let placed = place_markers(
            markers
                .iter()
                .map(|m| (x_of(m.t_s), clean_text(&m.label, 60)))
                .collect(),
        );
        let rows = placed.iter().map(|p| p.row + 1).max().unwrap_or(0) as u32;
        let band = if rows > 0 {
            rows * MARKER_ROW_HEIGHT + 8
        } else {
            0
        };
        let panels_top = TITLE_BAND + band;
        let n = self.panels.len() as u32;
        let height = panels_top + n * PANEL_HEIGHT + if n > 0 { TIME_TITLE_BAND } else { 16 };

        let mut out = String::new();
        let drawn = {
            let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
            self.draw(&root, duration, &placed, panels_top)
                .and_then(|()| root.present())
        };
        if let Err(e) = drawn {
            // Drawing into a string does not fail; should plotters refuse, say so in the figure.
            return format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"40\">\
                 <text x=\"8\" y=\"24\">{}: the plot could not be drawn: {}</text></svg>\n",
                esc(&self.title),
                esc(&e.to_string())
            );
        }
        // The document's title (plotters has no element for it), right after `<svg …>`.
        if let Some(open_end) = out.find(">\n") {
            out.insert_str(
                open_end + 2,
                &format!("<title>{}</title>\n", esc(&self.title)),
            );
        }
        out
    }

    fn draw(
        &self,
        root: &DrawingArea<SVGBackend, Shift>,
        duration: f64,
        placed: &[PlacedMarker],
        panels_top: u32,
    ) -> DrawResult {
        root.fill(&WHITE)?;
        root.draw(&Text::new(
            clean_text(&self.title, 80),
            (PLOT_LEFT as i32, 10),
            font(18.0).style(FontStyle::Bold).color(&TEXT_COLOUR),
        ))?;
        let n = self.panels.len() as u32;
        // Marker lines first, so that data and text are drawn over them; they run down to the
        // last panel's time axis.
        let lines_bottom = if n > 0 {
            panels_top + n * PANEL_HEIGHT - TICKS_BELOW_PLOT
        } else {
            panels_top
        };
        draw_markers(root, placed, lines_bottom as i32)?;
        if n == 0 {
            root.draw(&Text::new(
                "(no panels)",
                (PLOT_LEFT as i32, panels_top as i32),
                font(12.0).color(&RGBColor(0x77, 0x77, 0x77)),
            ))?;
            return Ok(());
        }
        let (_, below) = root.split_vertically(panels_top);
        let breaks: Vec<u32> = (1..n).map(|i| i * PANEL_HEIGHT).collect();
        let areas = below.split_by_breakpoints::<u32, u32, _, _>([], breaks);
        for (i, (panel, area)) in self.panels.iter().zip(&areas).enumerate() {
            draw_panel(area, panel, duration, i + 1 == areas.len())?;
        }
        Ok(())
    }
}

/// The markers' lines and, in the band above the panels, their labels on a white
/// background.
fn draw_markers(
    root: &DrawingArea<SVGBackend, Shift>,
    placed: &[PlacedMarker],
    lines_bottom: i32,
) -> DrawResult {
    for p in placed {
        let top = (TITLE_BAND + p.row as u32 * MARKER_ROW_HEIGHT) as i32;
        let x = p.x.round() as i32;
        // Solid and faint: plotters writes a dashed line as one element per dash (a marker
        // across five panels made ~180 of them).
        root.draw(&PathElement::new(
            [(x, top + 1), (x, lines_bottom)],
            MARKER_COLOUR.mix(0.6).stroke_width(1),
        ))?;
        root.draw(&Rectangle::new(
            [
                (p.start.round() as i32 - 1, top + 1),
                (p.end.round() as i32 + 1, top + MARKER_ROW_HEIGHT as i32 - 1),
            ],
            WHITE.filled(),
        ))?;
        let (tx, h) = if p.anchor_end {
            (p.end, HPos::Right)
        } else {
            (p.start, HPos::Left)
        };
        root.draw(&Text::new(
            p.text.clone(),
            (tx.round() as i32, top + 2),
            font(MARKER_FONT)
                .color(&RGBColor(0x33, 0x33, 0x33))
                .pos(Pos::new(h, VPos::Top)),
        ))?;
    }
    Ok(())
}

/// One panel: title, axes with ticks, the series (dashed past the palette), dots on short
/// series, and the legend right of the plot.
fn draw_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    panel: &Panel,
    duration: f64,
    last: bool,
) -> DrawResult {
    let series: Vec<CleanSeries> = panel
        .series
        .iter()
        .map(|s| clean_series(s, duration))
        .collect();
    let range = value_range(&series);
    let (lo, hi) = range.unwrap_or((0.0, 1.0));
    let max_abs = lo.abs().max(hi.abs());
    let mut chart = ChartBuilder::on(area)
        .caption(
            clean_text(&panel.title, 100),
            font(14.0).style(FontStyle::Bold).color(&TEXT_COLOUR),
        )
        .margin_top(6)
        .margin_right(WIDTH - PLOT_RIGHT)
        .y_label_area_size(PLOT_LEFT)
        .x_label_area_size(TICKS_BELOW_PLOT + if last { TIME_TITLE_BAND } else { 0 })
        .build_cartesian_2d(0f64..duration, lo..hi)?;
    let time_label = |t: &f64| tick_label(*t, duration);
    let value_label = |v: &f64| tick_label(*v, max_abs);
    let y_desc = clean_text(&panel.y_label, 40);
    let mut mesh = chart.configure_mesh();
    mesh.x_labels(11)
        .y_labels(6)
        .x_label_formatter(&time_label)
        .y_label_formatter(&value_label)
        .label_style(font(12.0).color(&RGBColor(0x33, 0x33, 0x33)))
        .axis_desc_style(font(12.0).color(&RGBColor(0x33, 0x33, 0x33)))
        .bold_line_style(RGBColor(0xe6, 0xe6, 0xe6))
        // No minor grid: it would be ~500 more lines in a report.
        .light_line_style(TRANSPARENT)
        .y_desc(y_desc);
    if last {
        mesh.x_desc("time (s)");
    }
    mesh.draw()?;

    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let line = colour.stroke_width(2);
        if i < PALETTE.len() {
            chart.draw_series(LineSeries::new(s.points.iter().copied(), line))?;
        } else {
            chart.draw_series(DashedLineSeries::new(s.points.iter().copied(), 7, 3, line))?;
        }
        if s.points.len() <= DOTS_UP_TO {
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 2, colour.filled())))?;
        }
    }
    if range.is_none() {
        chart.plotting_area().draw(&Text::new(
            "no data",
            (duration / 2.0, (lo + hi) / 2.0),
            font(13.0)
                .color(&RGBColor(0x99, 0x99, 0x99))
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
    }
    // The legend, right of the plot: plotters' own legend box clamps to the plotting area, where
    // it would hide data.
    let plot_top = chart.plotting_area().get_pixel_range().1.start - area.get_base_pixel().1;
    let left = PLOT_RIGHT as i32 + 10;
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let y = plot_top + 6 + 16 * i as i32;
        let swatch = [(left, y), (left + 18, y)];
        if i < PALETTE.len() {
            area.draw(&PathElement::new(swatch, colour.stroke_width(3)))?;
        } else {
            area.draw(&DashedPathElement::new(
                swatch,
                5,
                2,
                colour.stroke_width(3),
            ))?;
        }
        area.draw(&Text::new(
            s.name.clone(),
            (left + 24, y),
            font(12.0)
                .color(&TEXT_COLOUR)
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
    }
    Ok(())
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

    /// The text of every `<text>` element, trimmed (still XML-escaped).
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let body = &t[t.find('>')? + 1..];
                Some(body[..body.find("</text>")?].trim().to_string())
            })
            .collect()
    }

    #[test]
    fn plot_svg_has_titles_series_markers_and_legends() {
        let fig = sample();
        let svg = fig.to_svg();
        assert_clean(&svg);
        assert_balanced(&svg);
        let texts = texts(&svg);
        let has = |s: &str| texts.iter().any(|t| t == s);
        for panel in &fig.panels {
            assert!(has(&panel.title), "panel title {}", panel.title);
            assert!(has(&panel.y_label), "y label {}", panel.y_label);
            // A legend entry for every series.
            for s in &panel.series {
                assert!(has(&s.name), "legend {}", s.name);
            }
        }
        // Every marker is labelled and drawn as a line in the marker colour.
        for m in &fig.markers {
            assert!(has(&m.label), "marker {}", m.label);
        }
        assert_eq!(
            svg.matches("stroke=\"#555555\"").count(),
            fig.markers.len(),
            "one line per marker"
        );
        assert!(svg.contains(
            "<title>scenario: equivocating leader &lt;n=4, f=1&gt; &amp; recovery</title>"
        ));
        assert!(has(
            "scenario: equivocating leader &lt;n=4, f=1&gt; &amp; recovery"
        ));
        assert!(has("time (s)"));
        // Series lines in their palette colours; the ninth and tenth replicas reuse them dashed.
        for colour in ["#1F77B4", "#FF7F0E", "#2CA02C", "#17BECF"] {
            assert!(
                svg.to_uppercase().contains(&format!("STROKE=\"{colour}\"")),
                "no series in {colour}"
            );
        }
        assert!(svg.matches("<polyline").count() >= 7, "series lines");
        // Time ticks every 20 s and SI suffixes on the huge panel.
        for t in ["0", "20", "60", "120"] {
            assert!(has(t), "time tick {t}");
        }
        assert!(has("400G"), "{texts:?}");
        assert!(has("no data"));
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
        let texts = texts(&svg);
        let has = |s: &str| texts.iter().any(|t| t == s);
        assert!(has("a &lt; b &amp; c"));
        assert!(has("&lt;script&gt;alert(&apos;x&apos;)&lt;/script&gt;"));
        assert!(has("&quot;quoted&quot; &amp; more"));
        assert!(has("s&lt;1&gt;&amp;"), "{texts:?}");
        assert!(has("a&amp;b&lt;c&gt;"));
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
    fn plot_tick_labels() {
        let labels = |max: f64, ticks: &[f64]| -> Vec<String> {
            ticks.iter().map(|&v| tick_label(v, max)).collect()
        };
        assert_eq!(labels(100.0, &[0.0, 20.0, 100.0]), ["0", "20", "100"]);
        assert_eq!(
            labels(1.0, &[0.0, 0.2, 0.30000000000000004]),
            ["0", "0.2", "0.3"]
        );
        assert_eq!(labels(0.015, &[0.005, 0.0025]), ["0.005", "0.0025"]);
        assert_eq!(labels(2.6e6, &[0.5e6, 1e6, 2.5e6]), ["0.5M", "1M", "2.5M"]);
        assert_eq!(labels(40_000.0, &[10_000.0, 35_000.0]), ["10k", "35k"]);
        assert_eq!(labels(5000.0, &[1000.0, 5000.0]), ["1000", "5000"]);
        assert_eq!(labels(4.2e11, &[4e11, 1e11]), ["400G", "100G"]);
        assert_eq!(labels(3e18, &[1e18, 3e18]), ["1e18", "3e18"]);
        assert_eq!(labels(2e-5, &[5e-6, 1.5e-5]), ["5e-6", "1.5e-5"]);
        assert_eq!(labels(1e300, &[f64::NAN, f64::INFINITY]), ["", ""]);
        assert_eq!(labels(3.0, &[-3.0, -1.5]), ["-3", "-1.5"]);
    }

    #[test]
    fn plot_marker_labels_do_not_collide() {
        let check = |xs: &[f64], lines_may_cross: bool| {
            let placed = place_markers(
                xs.iter()
                    .map(|&x| (x, "replica 0 equivocate".to_string()))
                    .collect(),
            );
            for (i, a) in placed.iter().enumerate() {
                assert!(a.start >= 0.0 && a.end <= f64::from(WIDTH), "{a:?}");
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
