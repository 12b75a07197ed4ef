//! SVG charts of a run (plotters): outcomes over time, queue depth, disk usage with sweep
//! marks. Each chart is rendered to a string, so the same bytes go to the `.svg` files and
//! into the HTML report.
//!
//! Legends sit in a row above each plot, never over the data. Series with very different
//! magnitudes get panels of their own: 429s are a handful per hour beside thousands
//! admitted, and sweeps are instants beside a level, so each has its own axis.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use backstop_sim_check::log::Trigger;

use crate::config::SimConfig;
use crate::report::{Bin, Series};

type ChartResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Width of every chart, px.
const WIDTH_PX: u32 = 1000;
/// The most points a rate line is drawn with: more are averaged in groups (1440 one-minute
/// bins of noise read as a solid smear).
const MAX_RATE_POINTS: usize = 360;

const FONT: &str = "sans-serif";
const TITLE_PX: u32 = 22;
const LABEL_PX: u32 = 16;

// Colours that stay apart for colour-blind readers and in print (Tableau 10).
const ADMITTED: RGBColor = RGBColor(44, 160, 44);
const RATE_LIMITED: RGBColor = RGBColor(214, 39, 40);
const OVERLOADED: RGBColor = RGBColor(31, 119, 180);
const LIMIT: RGBColor = RGBColor(214, 39, 40);
const THRESHOLD: RGBColor = RGBColor(255, 127, 14);
const CAPACITY: RGBColor = RGBColor(127, 127, 127);
const USED: RGBColor = RGBColor(140, 86, 75);
const SCHEDULED_SWEEP: RGBColor = RGBColor(44, 160, 44);
const PRESSURE_SWEEP: RGBColor = RGBColor(148, 103, 189);

/// The three charts of a run, as SVG documents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charts {
    /// Requests per minute by outcome, 429s in their own panel.
    pub outcomes: String,
    /// Queue depth against the queue bound.
    pub queue: String,
    /// Disk usage against the pressure threshold, sweeps in a strip below.
    pub disk: String,
}

impl Charts {
    /// (file name, SVG) of each chart, in report order.
    pub fn files(&self) -> [(&'static str, &str); 3] {
        [
            ("outcomes.svg", &self.outcomes),
            ("queue.svg", &self.queue),
            ("disk.svg", &self.disk),
        ]
    }
}

/// Renders the three charts of `series`.
pub fn render(series: &Series, config: &SimConfig) -> ChartResult<Charts> {
    Ok(Charts {
        outcomes: svg(520, |root| outcomes_chart(root, series))?,
        queue: svg(400, |root| queue_chart(root, series, config))?,
        disk: svg(480, |root| disk_chart(root, series, config))?,
    })
}

/// Writes `outcomes.svg`, `queue.svg` and `disk.svg` into `dir`; returns their paths.
pub fn write_all(dir: &Path, charts: &Charts) -> ChartResult<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let mut paths = Vec::new();
    for (name, svg) in charts.files() {
        let path = dir.join(name);
        std::fs::write(&path, svg)?;
        paths.push(path.display().to_string());
    }
    Ok(paths)
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn svg(height_px: u32, draw: impl FnOnce(&Area<'_>) -> ChartResult<()>) -> ChartResult<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH_PX, height_px)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(out)
}

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
enum Mark {
    Line,
    Block,
    Tick,
}

/// A title, then a row of legend entries; returns the area left below them.
fn heading<'a>(
    root: &Area<'a>,
    title: &str,
    entries: &[(&str, RGBColor, Mark)],
) -> ChartResult<Area<'a>> {
    let (head, rest) = root.split_vertically(58);
    head.draw(&Text::new(
        title.to_owned(),
        (70, 8),
        (FONT, TITLE_PX).into_font().style(FontStyle::Bold),
    ))?;
    let mut x = 70;
    let y = 40;
    for &(name, color, mark) in entries {
        match mark {
            Mark::Line => head.draw(&PathElement::new(
                vec![(x, y), (x + 24, y)],
                color.stroke_width(3),
            ))?,
            Mark::Block => head.draw(&Rectangle::new(
                [(x, y - 7), (x + 24, y + 7)],
                color.mix(0.45).filled(),
            ))?,
            Mark::Tick => head.draw(&PathElement::new(
                vec![(x + 12, y - 8), (x + 12, y + 8)],
                color.stroke_width(2),
            ))?,
        }
        head.draw(&Text::new(
            name.to_owned(),
            (x + 32, y - 8),
            (FONT, LABEL_PX).into_font(),
        ))?;
        // A rough width for the label: the SVG backend has no font metrics to ask.
        x += 32 + name.chars().count() as i32 * 15 / 2 + 24;
    }
    Ok(rest)
}

fn hours_at(series: &Series, bin: usize) -> f64 {
    (bin as u64 * series.bin_us) as f64 / 3.6e9
}

fn x_end(series: &Series) -> f64 {
    hours_at(series, series.bins.len().max(1))
}

/// Hour labels with as many decimals as the run's length needs.
fn hour_label(x_end: f64) -> impl Fn(&f64) -> String {
    let decimals = if x_end >= 5.0 {
        0
    } else if x_end >= 0.5 {
        1
    } else {
        2
    };
    move |v| format!("{v:.decimals$}")
}

/// Value labels without needless decimals: `20`, not `20.0`, on an axis up to `y_max`.
fn value_label(y_max: f64) -> impl Fn(&f64) -> String {
    let decimals = if y_max >= 5.0 { 0 } else { 1 };
    move |v| format!("{v:.decimals$}")
}

/// Per-minute rates of `get`, averaged over groups of bins so that at most
/// [`MAX_RATE_POINTS`] points are drawn; each point at its group's start.
fn rate_points(s: &Series, get: fn(&Bin) -> u64) -> (Vec<(f64, f64)>, u64) {
    let group = s.bins.len().div_ceil(MAX_RATE_POINTS).max(1);
    let minutes = (group as u64 * s.bin_us) as f64 / 6e7;
    let points = s
        .bins
        .chunks(group)
        .enumerate()
        .map(|(i, c)| {
            let n: u64 = c.iter().map(get).sum();
            (hours_at(s, i * group), n as f64 / minutes)
        })
        .collect();
    (points, (group as u64 * s.bin_us) / 60_000_000)
}

fn averaged_over(minutes: u64) -> String {
    if minutes <= 1 {
        "per minute".into()
    } else {
        format!("per minute, {minutes}-minute means")
    }
}

fn outcomes_chart(root: &Area<'_>, s: &Series) -> ChartResult<()> {
    let (admitted, group_min) = rate_points(s, |b| b.admitted);
    let (overloaded, _) = rate_points(s, |b| b.overloaded);
    let (limited, _) = rate_points(s, |b| b.rate_limited);
    let area = heading(
        root,
        &format!("Requests by outcome ({})", averaged_over(group_min)),
        &[
            ("admitted", ADMITTED, Mark::Line),
            ("503 overloaded", OVERLOADED, Mark::Line),
            (
                "429 rate limited (own axis, below)",
                RATE_LIMITED,
                Mark::Line,
            ),
        ],
    )?;
    let (upper, lower) = area.split_vertically(area.dim_in_pixel().1 * 62 / 100);
    let x_max = x_end(s);
    let peak = |p: &[(f64, f64)]| p.iter().map(|&(_, y)| y).fold(0.0, f64::max);
    let y_max = peak(&admitted).max(peak(&overloaded)).max(1.0) * 1.08;
    let mut chart = ChartBuilder::on(&upper)
        .margin_right(20)
        .x_label_area_size(28)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(BLACK.mix(0.12))
        .label_style((FONT, LABEL_PX))
        .axis_desc_style((FONT, LABEL_PX))
        .x_label_formatter(&hour_label(x_max))
        .y_label_formatter(&value_label(y_max))
        .y_desc("requests / min")
        .draw()?;
    chart.draw_series(LineSeries::new(overloaded, OVERLOADED.stroke_width(2)))?;
    chart.draw_series(LineSeries::new(admitted, ADMITTED.stroke_width(2)))?;

    let y_max = peak(&limited).max(1.0) * 1.15;
    let mut chart = ChartBuilder::on(&lower)
        .margin_right(20)
        .margin_top(8)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(BLACK.mix(0.12))
        .label_style((FONT, LABEL_PX))
        .axis_desc_style((FONT, LABEL_PX))
        .y_labels(4)
        .x_label_formatter(&hour_label(x_max))
        .x_desc("virtual time (h)")
        .y_label_formatter(&value_label(y_max))
        .y_desc("429 / min")
        .draw()?;
    chart.draw_series(
        AreaSeries::new(limited, 0.0, RATE_LIMITED.mix(0.45)).border_style(RATE_LIMITED),
    )?;
    Ok(())
}

fn queue_chart(root: &Area<'_>, s: &Series, config: &SimConfig) -> ChartResult<()> {
    let max_queue = f64::from(config.limits.queue.max);
    let area = heading(
        root,
        "Queue depth (deepest per bin)",
        &[
            ("jobs waiting", OVERLOADED, Mark::Block),
            ("queue bound (limits.queue.max)", LIMIT, Mark::Line),
        ],
    )?;
    let x_max = x_end(s);
    let mut chart = ChartBuilder::on(&area)
        .margin_right(20)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..(max_queue * 1.08).max(1.0))?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(BLACK.mix(0.12))
        .label_style((FONT, LABEL_PX))
        .axis_desc_style((FONT, LABEL_PX))
        .x_label_formatter(&hour_label(x_max))
        .x_desc("virtual time (h)")
        .y_label_formatter(&value_label(max_queue))
        .y_desc("jobs waiting")
        .draw()?;
    // A step per bin: each bin's depth holds across its width.
    let steps = s.bins.iter().enumerate().flat_map(|(i, b)| {
        let y = b.queue_max as f64;
        [(hours_at(s, i), y), (hours_at(s, i + 1), y)]
    });
    chart
        .draw_series(AreaSeries::new(steps, 0.0, OVERLOADED.mix(0.45)).border_style(OVERLOADED))?;
    chart.draw_series(LineSeries::new(
        [(0.0, max_queue), (x_max, max_queue)],
        LIMIT.stroke_width(2),
    ))?;
    Ok(())
}

fn disk_chart(root: &Area<'_>, s: &Series, config: &SimConfig) -> ChartResult<()> {
    let gib = (1u64 << 30) as f64;
    let cap = config.disk.capacity_bytes as f64 / gib;
    let threshold = config.pressure_bytes() as f64 / gib;
    let area = heading(
        root,
        "Disk used (GiB), sweeps below",
        &[
            ("used (highest per bin)", USED, Mark::Line),
            ("pressure threshold", THRESHOLD, Mark::Line),
            ("capacity", CAPACITY, Mark::Line),
            ("scheduled sweep", SCHEDULED_SWEEP, Mark::Tick),
            ("pressure sweep", PRESSURE_SWEEP, Mark::Tick),
        ],
    )?;
    let (upper, lower) = area.split_vertically(area.dim_in_pixel().1 - 110);
    let x_max = x_end(s);
    let mut chart = ChartBuilder::on(&upper)
        .margin_right(20)
        .x_label_area_size(28)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..cap * 1.05)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .bold_line_style(BLACK.mix(0.12))
        .label_style((FONT, LABEL_PX))
        .axis_desc_style((FONT, LABEL_PX))
        .x_label_formatter(&hour_label(x_max))
        .y_label_formatter(&value_label(cap))
        .y_desc("GiB")
        .draw()?;
    for (y, color) in [(cap, CAPACITY), (threshold, THRESHOLD)] {
        chart.draw_series(LineSeries::new(
            [(0.0, y), (x_max, y)],
            color.stroke_width(2),
        ))?;
    }
    let used = s.bins.iter().enumerate().flat_map(|(i, b)| {
        let y = b.disk_max as f64 / gib;
        [(hours_at(s, i), y), (hours_at(s, i + 1), y)]
    });
    chart.draw_series(LineSeries::new(used, USED.stroke_width(2)))?;

    // Sweeps are instants: one tick each in a strip of their own, one row per trigger,
    // so that sixty pressure sweeps in an hour never hide the usage line.
    let mut strip = ChartBuilder::on(&lower)
        .margin_right(20)
        .margin_top(6)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..2.0)?;
    strip
        .configure_mesh()
        .disable_mesh()
        .label_style((FONT, LABEL_PX))
        .axis_desc_style((FONT, LABEL_PX))
        .y_labels(2)
        .y_label_formatter(&|_| String::new())
        .x_label_formatter(&hour_label(x_max))
        .x_desc("virtual time (h)")
        .draw()?;
    for (row, trigger, color, name) in [
        (1.0, Trigger::Schedule, SCHEDULED_SWEEP, "scheduled"),
        (0.0, Trigger::Pressure, PRESSURE_SWEEP, "pressure"),
    ] {
        strip.draw_series(s.sweeps.iter().filter(|(_, t, _)| *t == trigger).map(
            move |(t_us, _, _)| {
                let x = *t_us as f64 / 3.6e9;
                PathElement::new(vec![(x, row + 0.2), (x, row + 0.8)], color.stroke_width(1))
            },
        ))?;
        // The row's name left of the axis; the root's coordinates are the backend's.
        let (x_px, y_px) = strip.backend_coord(&(0.0, row + 0.5));
        root.draw(&Text::new(
            name,
            (x_px - 8, y_px),
            (FONT, LABEL_PX)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Right, VPos::Center)),
        ))?;
    }
    Ok(())
}
