//! Plots written as PNG with plotters.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// DejaVu Sans, embedded so that plots need no system fonts (licence beside it in `cli/assets/`).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The embedded font is a valid TrueType file, so registration cannot fail.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// A loss curve: step on x, loss on y.
pub fn plot_losses(points: &[(u64, f64)], path: &Path, title: &str) -> Result<()> {
    if points.is_empty() {
        return Ok(());
    }
    register_font();
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let (lo, hi) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let last = points.last().map(|p| p.0).unwrap_or(1).max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0u64..last, (lo - pad)..(hi + pad))
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .draw()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    chart
        .draw_series(LineSeries::new(points.iter().copied(), &BLUE))
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    root.present()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(())
}

/// A bar chart of counts (one bar per index, in the given order).
pub fn plot_bars(counts: &[u32], path: &Path, title: &str) -> Result<()> {
    register_font();
    let root = BitMapBackend::new(path, (900, 400)).into_drawing_area();
    root.fill(&WHITE)
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let top = counts.iter().copied().max().unwrap_or(1).max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d(0u32..counts.len() as u32, 0u32..top + 1)
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    chart
        .configure_mesh()
        .x_desc("prototypes, most used first")
        .y_desc("targets")
        .draw()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    chart
        .draw_series(
            counts
                .iter()
                .enumerate()
                .map(|(i, &c)| Rectangle::new([(i as u32, 0), (i as u32 + 1, c)], BLUE.filled())),
        )
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    root.present()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(())
}

/// Accuracy curves against training time: one named series of
/// (minutes, accuracy in %) per measure, with a legend.
pub fn plot_accuracy(series: &[(&str, Vec<(f64, f64)>)], path: &Path, title: &str) -> Result<()> {
    if series.iter().all(|(_, points)| points.is_empty()) {
        return Ok(());
    }
    register_font();
    let fail = |e: &dyn std::fmt::Display| anyhow!("{}: {e}", path.display());
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let last = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..last * 1.02, 0.0..100.0)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("training time (minutes, measurements excluded)")
        .y_desc("accuracy (%)")
        .draw()
        .map_err(|e| fail(&e))?;
    for (k, (name, points)) in series.iter().enumerate() {
        let colour = Palette99::pick(k).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(|e| fail(&e))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}
