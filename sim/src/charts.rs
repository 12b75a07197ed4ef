//! SVG charts of a run (plotters): outcomes over time, queue depth, disk usage with sweep
//! marks.

use std::path::Path;

use plotters::prelude::*;

use crate::config::SimConfig;
use crate::log::Trigger;
use crate::report::Series;

type ChartResult<T> = Result<T, Box<dyn std::error::Error>>;
/// A named, coloured count of one bin.
type Line = (&'static str, RGBColor, fn(&crate::report::Bin) -> u64);

/// Writes `outcomes.svg`, `queue.svg` and `disk.svg` into `dir`; returns their paths.
pub fn write_all(dir: &Path, series: &Series, config: &SimConfig) -> ChartResult<Vec<String>> {
    std::fs::create_dir_all(dir)?;
    let outcomes = dir.join("outcomes.svg");
    let queue = dir.join("queue.svg");
    let disk = dir.join("disk.svg");
    outcomes_chart(&outcomes, series)?;
    queue_chart(&queue, series, config)?;
    disk_chart(&disk, series, config)?;
    Ok([outcomes, queue, disk]
        .iter()
        .map(|p| p.display().to_string())
        .collect())
}

fn hours(series: &Series, i: usize) -> f64 {
    (i as u64 * series.bin_us) as f64 / 3.6e9
}

fn x_end(series: &Series) -> f64 {
    hours(series, series.bins.len().max(1))
}

fn outcomes_chart(path: &Path, s: &Series) -> ChartResult<()> {
    let root = SVGBackend::new(path, (1000, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let per_min = s.bin_us as f64 / 6e7;
    let y_max = s
        .bins
        .iter()
        .map(|b| (b.admitted + b.rate_limited + b.overloaded) as f64 / per_min)
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption("Requests per minute by outcome", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_end(s), 0.0..y_max * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("virtual time (h)")
        .y_desc("requests / min")
        .draw()?;
    let lines: [Line; 3] = [
        ("admitted", GREEN, |b| b.admitted),
        ("429 rate limited", RED, |b| b.rate_limited),
        ("503 overloaded", BLUE, |b| b.overloaded),
    ];
    for (name, color, get) in lines {
        chart
            .draw_series(LineSeries::new(
                s.bins
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (hours(s, i), get(b) as f64 / per_min)),
                color,
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn queue_chart(path: &Path, s: &Series, config: &SimConfig) -> ChartResult<()> {
    let root = SVGBackend::new(path, (1000, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_queue = f64::from(config.limits.queue.max);
    let mut chart = ChartBuilder::on(&root)
        .caption("Queue depth (max per bin)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_end(s), 0.0..max_queue * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("virtual time (h)")
        .y_desc("jobs waiting")
        .draw()?;
    chart.draw_series(AreaSeries::new(
        s.bins
            .iter()
            .enumerate()
            .map(|(i, b)| (hours(s, i), b.queue_max as f64)),
        0.0,
        BLUE.mix(0.3),
    ))?;
    chart
        .draw_series(LineSeries::new(
            [(0.0, max_queue), (x_end(s), max_queue)],
            RED,
        ))?
        .label("max_queue")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn disk_chart(path: &Path, s: &Series, config: &SimConfig) -> ChartResult<()> {
    let root = SVGBackend::new(path, (1000, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let gib = (1u64 << 30) as f64;
    let cap = config.disk.capacity_bytes as f64 / gib;
    let mut chart = ChartBuilder::on(&root)
        .caption("Disk used (GiB) with sweeps", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_end(s), 0.0..cap * 1.05)?;
    chart
        .configure_mesh()
        .x_desc("virtual time (h)")
        .y_desc("GiB")
        .draw()?;
    // Bins without an observation carry the previous value forward.
    let mut last = 0.0;
    let points: Vec<(f64, f64)> = s
        .bins
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if b.disk_max > 0 {
                last = b.disk_max as f64 / gib;
            }
            (hours(s, i), last)
        })
        .collect();
    chart
        .draw_series(LineSeries::new(points, BLACK))?
        .label("used")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    let threshold = config.pressure_bytes() as f64 / gib;
    chart
        .draw_series(LineSeries::new(
            [(0.0, threshold), (x_end(s), threshold)],
            RED.mix(0.6),
        ))?
        .label("pressure threshold")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    for (trigger, color, name) in [
        (Trigger::Schedule, GREEN, "scheduled sweep"),
        (Trigger::Pressure, MAGENTA, "pressure sweep"),
    ] {
        chart
            .draw_series(s.sweeps.iter().filter(|(_, t, _)| *t == trigger).map(
                move |(t_us, _, _)| {
                    let x = *t_us as f64 / 3.6e9;
                    PathElement::new(vec![(x, 0.0), (x, cap)], color.mix(0.5))
                },
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
