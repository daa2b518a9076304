//! `--plot FILE.svg`: the streams against message size, mpshm beside its baselines. Left, the
//! time per message (lower is better); right, the throughput in bytes per second (higher is
//! better); both axes logarithmic. Drawn with plotters' SVG backend.

use std::path::Path;

use plotters::prelude::*;

use super::Side;
use super::report::{Report, time};
use super::transport::size_name;
use crate::kit::Res;

/// The series drawn, by the row id's suffix after `stream-<size>/`.
const SERIES: [(&str, &str); 8] = [
    ("queue", "mpshm Queue"),
    ("spscqueue", "mpshm SpscQueue"),
    ("pipe", "mpshm Pipe"),
    ("floor", "floor: SPSC ring"),
    ("os-pipe", "OS pipe"),
    ("socket", "Unix socket"),
    ("python-queue", "Python mp.Queue"),
    ("python-pipe", "Python mp.Pipe"),
];

fn style(i: usize, side: Side) -> ShapeStyle {
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(0, 0, 0),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
    ];
    let width = if side == Side::Mpshm { 3 } else { 2 };
    colors[i % colors.len()].stroke_width(width)
}

type Points = Vec<(f64, f64)>;

/// Per series: its name, side, and `(size, ns per message)` points.
fn series(report: &Report) -> Vec<(String, Side, Points)> {
    let mut out = Vec::new();
    for (suffix, name) in SERIES {
        let mut side = Side::Mpshm;
        let points: Points = report
            .settings
            .sizes
            .iter()
            .filter_map(|&size| {
                let row = report.row(&format!("stream-{size}/{suffix}"))?;
                side = row.side;
                Some((size as f64, row.median? * 1e9))
            })
            .collect();
        if !points.is_empty() {
            out.push((name.to_owned(), side, points));
        }
    }
    out
}

/// Draws the chart of `report` into `path`.
pub fn draw(report: &Report, path: &Path) -> Res<()> {
    let all = series(report);
    if all.is_empty() {
        return Err("nothing to plot: no stream ran (see --only)".into());
    }
    // x is log2 of the size, so that the ticks fall on whole sizes.
    let sizes = &report.settings.sizes;
    let (lo, hi) = (
        (*sizes.iter().min().unwrap_or(&8) as f64).log2(),
        (*sizes.iter().max().unwrap_or(&8) as f64).log2(),
    );
    let (xlo, xhi) = (lo - 0.5, hi + 0.5);
    let ticks = (hi - lo) as usize + 2;
    let ns: Vec<f64> = all.iter().flat_map(|s| s.2.iter().map(|p| p.1)).collect();
    let bw: Vec<f64> = all
        .iter()
        .flat_map(|s| s.2.iter().map(|&(size, ns)| size / ns * 1e9))
        .collect();
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        (lo / 2.0)..(hi * 2.0)
    };
    let root = SVGBackend::new(path, (1280, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let title = format!(
        "mpshm bench: streams between two processes ({} cores; gauge {}, about 100-200 ns when \
         the cores are free)",
        report.machine.cores,
        time(super::stats::median(&report.gauges).unwrap_or(0.0) * 1e-9)
    );
    let root = root
        .titled(&title, ("sans-serif", 20))
        .map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(640);
    let panels: [(_, &str, std::ops::Range<f64>, bool); 2] = [
        (
            left,
            "time per message (lower is better)",
            range(&ns),
            false,
        ),
        (
            right,
            "throughput, bytes/s (higher is better)",
            range(&bw),
            true,
        ),
    ];
    for (area, desc, yr, bandwidth) in panels {
        let mut chart = ChartBuilder::on(&area)
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(72)
            .caption(desc, ("sans-serif", 16))
            .build_cartesian_2d(xlo..xhi, yr.log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("message size")
            .x_labels(ticks)
            .x_label_formatter(&|x| {
                let size = x.exp2().round() as usize;
                if (x - x.round()).abs() < 1e-6 && sizes.contains(&size) {
                    size_name(size)
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|&y| {
                if bandwidth {
                    if y >= 1e9 {
                        format!("{:.0} GB/s", y / 1e9)
                    } else {
                        format!("{:.0} MB/s", y / 1e6)
                    }
                } else {
                    time(y * 1e-9)
                }
            })
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (name, side, points)) in all.iter().enumerate() {
            let st = style(i, *side);
            let pts: Points = points
                .iter()
                .map(|&(size, ns)| (size.log2(), if bandwidth { size / ns * 1e9 } else { ns }))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), st))
                .map_err(|e| e.to_string())?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], st));
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, st.filled())))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(if bandwidth {
                SeriesLabelPosition::LowerRight
            } else {
                SeriesLabelPosition::UpperLeft
            })
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
