//! `compare --plot FILE`: GB/s by worker count, one panel per kernel, bars
//! for processes and threads, a dashed line for serial.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::compare::Record;
use crate::{CliError, CliResult};

const PROCESSES: RGBColor = RGBColor(31, 119, 180);
const THREADS: RGBColor = RGBColor(255, 127, 14);
const SERIAL: RGBColor = RGBColor(90, 90, 90);

/// Draws the chart into an SVG file at `path`: one panel per kernel with
/// a GB/s figure (the Mandelbrot set has none and is left out).
pub(crate) fn svg(path: &Path, records: &[Record], kernels: &[String]) -> CliResult {
    let records: Vec<Record> = records.iter().filter(|r| r.gb_per_s.is_some()).cloned().collect();
    let kernels: Vec<String> = kernels
        .iter()
        .filter(|k| records.iter().any(|r| &r.kernel == *k))
        .cloned()
        .collect();
    draw(path, &records, &kernels).map_err(|e| CliError::msg(format!("cannot draw {}: {e}", path.display())))
}

fn gb_per_s(r: &Record) -> f64 {
    r.gb_per_s.unwrap_or(0.0)
}

fn draw(path: &Path, records: &[Record], kernels: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let mut workers: Vec<usize> = records
        .iter()
        .filter(|r| r.backend != "serial")
        .map(|r| r.workers)
        .collect();
    workers.sort_unstable();
    workers.dedup();
    if workers.is_empty() {
        workers.push(1);
    }
    let panel_width = 160 + 110 * workers.len() as u32;
    let root = SVGBackend::new(path, (panel_width * kernels.len().max(1) as u32, 380)).into_drawing_area();
    root.fill(&WHITE)?;
    // The catalog kernels share one array; workloads have their own sizes.
    let title = match records.iter().find(|r| r.problem.is_none()) {
        Some(r) if records.iter().all(|o| o.problem.is_none()) => {
            format!(
                "shmpar compare: {} {} elements, GB/s (higher is better)",
                r.len, r.dtype
            )
        }
        _ => "shmpar compare: GB/s (higher is better)".to_string(),
    };
    let root = root.titled(&title, ("sans-serif", 16))?;
    let panels = root.split_evenly((1, kernels.len().max(1)));
    for (panel, kernel) in panels.iter().zip(kernels) {
        let mine: Vec<&Record> = records.iter().filter(|r| &r.kernel == kernel).collect();
        let top = mine.iter().map(|r| gb_per_s(r)).fold(0.0, f64::max).max(1e-3) * 1.5;
        let groups = workers.len() as f64;
        let mut chart = ChartBuilder::on(panel)
            .caption(kernel, ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(-0.5..groups - 0.5, 0.0..top)?;
        let labels = workers.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(workers.len() + 1)
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                    labels[i as usize].to_string()
                } else {
                    String::new()
                }
            })
            .x_desc("workers")
            .y_desc("GB/s")
            .draw()?;
        let width = 0.36;
        for (backend, color, offset) in [("processes", PROCESSES, -width), ("threads", THREADS, 0.0)] {
            let bars: Vec<(f64, f64)> = mine
                .iter()
                .filter(|r| r.backend == backend)
                .filter_map(|r| {
                    workers
                        .iter()
                        .position(|&w| w == r.workers)
                        .map(|i| (i as f64, gb_per_s(r)))
                })
                .collect();
            if bars.is_empty() {
                continue;
            }
            chart
                .draw_series(bars.iter().map(|&(x, y)| {
                    Rectangle::new(
                        [(x + offset + 0.02, 0.0), (x + offset + width - 0.02, y)],
                        color.filled(),
                    )
                }))?
                .label(backend)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
            chart.draw_series(bars.iter().map(|&(x, y)| {
                Text::new(
                    format!("{y:.1}"),
                    (x + offset + width / 2.0, y + top * 0.01),
                    ("sans-serif", 11)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                )
            }))?;
        }
        if let Some(serial) = mine.iter().find(|r| r.backend == "serial") {
            let y = gb_per_s(serial);
            chart
                .draw_series(DashedLineSeries::new(
                    [(-0.5, y), (groups - 0.5, y)],
                    6,
                    4,
                    SERIAL.stroke_width(2),
                ))?
                .label(format!("serial ({y:.1})"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 12, y)], SERIAL.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
