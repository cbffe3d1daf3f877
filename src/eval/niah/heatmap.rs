//! Plots with `plotters` (SVG and PNG backends, `ab_glyph` text): length × depth heatmaps and
//! recall-per-layer curves. Text needs a TrueType font; one is looked up at run time
//! (`$GEMFILTER_FONT`, then common DejaVu/Liberation/Arial paths). Without one the plots are drawn
//! without text and a notice says so.

use crate::scoring::ScoringSpec;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Register a font for plot text once; false when none was found.
fn have_font() -> bool {
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        let env = std::env::var_os("GEMFILTER_FONT").map(PathBuf::from);
        for p in env.into_iter().chain(FONT_PATHS.iter().map(PathBuf::from)) {
            if let Ok(bytes) = std::fs::read(&p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        crate::notice!(
            "no TrueType font found (set GEMFILTER_FONT=path.ttf): plots are drawn without text"
        );
        false
    })
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the plot: {e}")
}

/// Red (0) → yellow → green (1); grey for no data.
#[must_use]
pub fn color(v: Option<f64>) -> RGBColor {
    let Some(v) = v else {
        return RGBColor(220, 220, 220);
    };
    let v = v.clamp(0.0, 1.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let c = |a: f64, b: f64, t: f64| (a + (b - a) * t).round() as u8;
    if v < 0.5 {
        let t = v * 2.0;
        RGBColor(c(215.0, 250.0, t), c(48.0, 220.0, t), c(39.0, 90.0, t))
    } else {
        let t = (v - 0.5) * 2.0;
        RGBColor(c(250.0, 26.0, t), c(220.0, 150.0, t), c(90.0, 65.0, t))
    }
}

/// Draw to `<stem>.svg` and `<stem>.png` with the same function.
#[allow(clippy::type_complexity)] // one drawing routine for both backends
fn both(
    stem: &Path,
    size: (u32, u32),
    draw: &dyn Fn(
        DrawingArea<SVGBackend<'_>, Shift>,
        DrawingArea<BitMapBackend<'_>, Shift>,
    ) -> Result<()>,
) -> Result<Vec<PathBuf>> {
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    let a = SVGBackend::new(&svg, size).into_drawing_area();
    let b = BitMapBackend::new(&png, size).into_drawing_area();
    draw(a, b)?;
    Ok(vec![svg, png])
}

/// A heatmap: `z[y][x]` in 0..1, columns labelled `xs`, rows labelled `ys`.
///
/// # Errors
/// File or drawing errors.
pub fn heatmap(
    stem: &Path,
    title: &str,
    x_desc: &str,
    xs: &[String],
    y_desc: &str,
    ys: &[String],
    z: &[Vec<Option<f64>>],
) -> Result<Vec<PathBuf>> {
    let w = 260 + 70 * u32::try_from(xs.len()).unwrap_or(10).max(3);
    let h = 120 + 34 * u32::try_from(ys.len()).unwrap_or(10).max(3);
    let w = w.max(680);
    both(stem, (w, h), &|a, b| {
        draw_heatmap(&a, title, x_desc, xs, y_desc, ys, z)?;
        draw_heatmap(&b, title, x_desc, xs, y_desc, ys, z)
    })
}

fn draw_heatmap<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    xs: &[String],
    y_desc: &str,
    ys: &[String],
    z: &[Vec<Option<f64>>],
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let (nx, ny) = (xs.len().max(1), ys.len().max(1));
    let text = have_font();
    let mut cb = ChartBuilder::on(root);
    cb.margin(10);
    if text {
        cb.caption(title, ("sans-serif", 18))
            .x_label_area_size(40)
            .y_label_area_size(60);
    }
    #[allow(clippy::cast_precision_loss)]
    let (fx, fy) = (nx as f64, ny as f64);
    // Cell i spans i-0.5..i+0.5, so the integer key points label the centres.
    let mut chart = cb
        .build_cartesian_2d(-0.5..fx - 0.5, -0.5..fy - 0.5)
        .map_err(err)?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let idx = |v: f64| ((v - v.round()).abs() < 1e-6 && v >= 0.0).then(|| v.round() as usize);
    if text {
        let xl = |v: &f64| idx(*v).and_then(|i| xs.get(i).cloned()).unwrap_or_default();
        let yl = |v: &f64| idx(*v).and_then(|i| ys.get(i).cloned()).unwrap_or_default();
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(nx)
            .y_labels(ny)
            .x_label_formatter(&xl)
            .y_label_formatter(&yl)
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()
            .map_err(err)?;
    }
    #[allow(clippy::cast_precision_loss)]
    let cells: Vec<(f64, f64, Option<f64>)> = z
        .iter()
        .enumerate()
        .flat_map(|(y, row)| {
            row.iter()
                .enumerate()
                .map(move |(x, v)| (x as f64, y as f64, *v))
        })
        .collect();
    chart
        .draw_series(cells.iter().map(|&(x, y, v)| {
            Rectangle::new([(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)], color(v).filled())
        }))
        .map_err(err)?;
    if text {
        let style = TextStyle::from(("sans-serif", 13).into_font()).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Center,
            ),
        );
        chart
            .draw_series(cells.iter().filter_map(|&(x, y, v)| {
                v.map(|v| Text::new(format!("{v:.2}"), (x, y), style.clone()))
            }))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Recall per layer, one line per scoring.
///
/// # Errors
/// File or drawing errors.
pub fn curves(
    stem: &Path,
    title: &str,
    series: &[(ScoringSpec, Vec<(usize, f64)>)],
) -> Result<Vec<PathBuf>> {
    both(stem, (900, 500), &|a, b| {
        draw_curves(&a, title, series)?;
        draw_curves(&b, title, series)
    })
}

fn draw_curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    series: &[(ScoringSpec, Vec<(usize, f64)>)],
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let max_layer = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .max()
        .unwrap_or(1);
    #[allow(clippy::cast_precision_loss)]
    let xmax = max_layer as f64 + 0.5;
    let text = have_font();
    let mut cb = ChartBuilder::on(root);
    cb.margin(12);
    if text {
        cb.caption(title, ("sans-serif", 18))
            .x_label_area_size(40)
            .y_label_area_size(50);
    }
    let mut chart = cb.build_cartesian_2d(-0.5..xmax, 0.0..1.05).map_err(err)?;
    if text {
        chart
            .configure_mesh()
            .x_desc("filter layer")
            .y_desc("mean selection recall")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(err)?;
    }
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = Palette99::pick(i).to_rgba();
        #[allow(clippy::cast_precision_loss)]
        let line: Vec<(f64, f64)> = pts.iter().map(|&(l, r)| (l as f64, r)).collect();
        let s = chart
            .draw_series(LineSeries::new(line.clone(), c.stroke_width(2)))
            .map_err(err)?;
        if text {
            s.label(name.to_string()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
            });
        }
        chart
            .draw_series(line.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(err)?;
    }
    if text {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}
