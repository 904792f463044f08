//! `--plot drift.png`: the relative drift of each conservation law over the run, on a log scale,
//! with its tolerance. Lines are drawn with plotters into a pixel buffer; text comes from a
//! pre-rasterised font, so no font files or system libraries are needed.

use crate::monitor::Monitor;
use noto_sans_mono_bitmap::{get_raster, get_raster_width, FontWeight, RasterHeight};
use plotters::prelude::*;
use std::path::Path;

const W: u32 = 960;
const H: u32 = 540;
const LEFT: u32 = 90;
const RIGHT: u32 = 230;
const TOP: u32 = 40;
const BOTTOM: u32 = 60;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot draw the plot: {0}")]
    Draw(String),
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// Drift below this is drawn at this value (a drift of exactly zero has no logarithm).
const FLOOR: f64 = 1e-17;

fn text(buf: &mut [u8], x: i64, y: i64, s: &str, color: (u8, u8, u8)) {
    let cw = get_raster_width(FontWeight::Regular, RasterHeight::Size16) as i64;
    for (i, ch) in s.chars().enumerate() {
        let Some(r) = get_raster(ch, FontWeight::Regular, RasterHeight::Size16) else { continue };
        for (row, line) in r.raster().iter().enumerate() {
            for (col, &a) in line.iter().enumerate() {
                let (px, py) = (x + i as i64 * cw + col as i64, y + row as i64);
                if a == 0 || px < 0 || py < 0 || px >= W as i64 || py >= H as i64 {
                    continue;
                }
                let at = ((py as u32 * W + px as u32) * 3) as usize;
                let alpha = a as f64 / 255.0;
                for (k, c) in [color.0, color.1, color.2].iter().enumerate() {
                    buf[at + k] = (buf[at + k] as f64 * (1.0 - alpha) + *c as f64 * alpha) as u8;
                }
            }
        }
    }
}

fn text_width(s: &str) -> i64 {
    get_raster_width(FontWeight::Regular, RasterHeight::Size16) as i64 * s.chars().count() as i64
}

/// Writes the drift history of `monitor` as a PNG at `path` (atomically: a temporary file renamed).
pub fn drift_plot(path: &Path, monitor: &Monitor, title: &str) -> Result<(), PlotError> {
    let last_step = monitor.history.last().map_or(1, |(s, _)| *s).max(1) as f64;
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for (_, drifts) in &monitor.history {
        for d in drifts.iter().filter(|d| d.is_finite()) {
            let l = d.max(FLOOR).log10();
            lo = lo.min(l);
            hi = hi.max(l);
        }
    }
    for l in &monitor.laws {
        if let Some(t) = l.tolerance {
            hi = hi.max(t.log10());
            lo = lo.min(t.log10());
        }
    }
    if !lo.is_finite() {
        (lo, hi) = (-16.0, 0.0);
    }
    let (y0, y1) = (lo.floor() - 0.5, (hi.ceil() + 0.5).max(lo.floor() + 1.0));
    let mut buf = vec![255u8; (W * H * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (W, H)).into_drawing_area();
        let area = root.margin(TOP, BOTTOM, LEFT, RIGHT);
        let mut chart = ChartBuilder::on(&area)
            .build_cartesian_2d(0.0..last_step, y0..y1)
            .map_err(|e| PlotError::Draw(e.to_string()))?;
        let grey = RGBColor(225, 225, 225);
        for decade in (y0.ceil() as i64)..=(y1.floor() as i64) {
            let d = decade as f64;
            chart
                .draw_series(LineSeries::new([(0.0, d), (last_step, d)], grey))
                .map_err(|e| PlotError::Draw(e.to_string()))?;
        }
        for (i, law) in monitor.laws.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let points: Vec<(f64, f64)> = monitor
                .history
                .iter()
                .filter_map(|(s, d)| d.get(i).filter(|x| x.is_finite()).map(|x| (*s as f64, x.max(FLOOR).log10())))
                .collect();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| PlotError::Draw(e.to_string()))?;
            if let Some(t) = law.tolerance {
                // A dashed line at the tolerance.
                let n = 40;
                for k in (0..n).step_by(2) {
                    let (a, b) = (last_step * k as f64 / n as f64, last_step * (k + 1) as f64 / n as f64);
                    chart
                        .draw_series(LineSeries::new([(a, t.log10()), (b, t.log10())], color))
                        .map_err(|e| PlotError::Draw(e.to_string()))?;
                }
            }
        }
        let frame = [(0.0, y0), (last_step, y0), (last_step, y1), (0.0, y1), (0.0, y0)];
        chart.draw_series(LineSeries::new(frame, BLACK)).map_err(|e| PlotError::Draw(e.to_string()))?;
        root.present().map_err(|e| PlotError::Draw(e.to_string()))?;
    }
    let (pw, ph) = ((W - LEFT - RIGHT) as f64, (H - TOP - BOTTOM) as f64);
    let px = |x: f64| LEFT as i64 + (x / last_step * pw) as i64;
    let py = |y: f64| TOP as i64 + ((y1 - y) / (y1 - y0) * ph) as i64;
    let black = (0, 0, 0);
    text(&mut buf, LEFT as i64, 2, title, black);
    for decade in (y0.ceil() as i64)..=(y1.floor() as i64) {
        let label = format!("1e{decade}");
        text(&mut buf, LEFT as i64 - 8 - text_width(&label), py(decade as f64) - 9, &label, black);
    }
    for k in 0..=4 {
        let s = (last_step * k as f64 / 4.0).round();
        let label = format!("{s}");
        text(&mut buf, px(s) - text_width(&label) / 2, (H - BOTTOM) as i64 + 6, &label, black);
    }
    text(&mut buf, LEFT as i64 + pw as i64 / 2 - 16, H as i64 - 26, "step", black);
    text(&mut buf, 6, TOP as i64 - 19, "relative drift", black);
    for (i, law) in monitor.laws.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let y = TOP as i64 + 10 + i as i64 * 44;
        let x = (W - RIGHT) as i64 + 16;
        for dx in 0..24 {
            for dy in 0..3 {
                let at = (((y + 8 + dy) as u32 * W + (x + dx) as u32) * 3) as usize;
                buf[at..at + 3].copy_from_slice(&[c.0, c.1, c.2]);
            }
        }
        text(&mut buf, x + 32, y, &law.name, (c.0, c.1, c.2));
        let tol = law.tolerance.map_or("no tolerance".to_string(), |t| format!("tolerance {t:.0e}"));
        text(&mut buf, x + 32, y + 18, &tol, (90, 90, 90));
    }
    write_png(path, &buf)
}

fn write_png(path: &Path, buf: &[u8]) -> Result<(), PlotError> {
    let err = |source: std::io::Error| PlotError::Write { path: path.display().to_string(), source };
    let tmp = path.with_extension("png.partial");
    {
        let file = std::fs::File::create(&tmp).map_err(err)?;
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), W, H);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| err(std::io::Error::other(e)))?;
        w.write_image_data(buf).map_err(|e| err(std::io::Error::other(e)))?;
    }
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::{LawInfo, LawSample};

    #[test]
    fn writes_a_png_of_the_right_size() {
        let laws = vec![
            LawInfo { name: "energy".into(), tolerance: Some(1e-4) },
            LawInfo { name: "momentum".into(), tolerance: None },
        ];
        let s =
            |x: f64| vec![LawSample { value: vec![1.0 + x], scale: 1.0 }, LawSample { value: vec![0.0], scale: 1.0 }];
        let mut m = Monitor::new(laws, s(0.0));
        for k in 1..20 {
            m.record(k * 10, s(1e-6 * k as f64));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("drift.png");
        drift_plot(&path, &m, "test").expect("plot");
        let bytes = std::fs::read(&path).expect("png");
        assert_eq!(&bytes[1..4], b"PNG");
        let decoder = png::Decoder::new(std::fs::File::open(&path).expect("open"));
        let reader = decoder.read_info().expect("info");
        assert_eq!((reader.info().width, reader.info().height), (W, H));
    }
}
