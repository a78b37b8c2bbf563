//! The report's charts: inline SVG drawn with plotters' SVG backend (text as SVG `<text>`, so no
//! font files are needed to draw and the page needs nothing from the network to show them).
//! Values here are only positions on a chart; the exact numbers are in the page's tables.

use chrono::NaiveDate;
use plotters::prelude::*;

use super::ReportError;

const WIDTH: u32 = 560;
const HEIGHT: u32 = 300;

/// Colours that stay apart for the usual handful of series.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One named series, a value per day of the chart (None: nothing that day).
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A line per series (with a marker per day, so a single day still shows).
    Lines,
    /// A bar per day, the series stacked.
    StackedBars,
}

/// How the y axis reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    Number,
    /// Values are shares from 0 to 1, shown as percentages.
    Percent,
}

fn chart_error(e: impl std::fmt::Display) -> ReportError {
    ReportError::Chart(e.to_string())
}

/// A day chart: `days` on the x axis, `partial` (an index into `days`) shaded and labelled.
pub fn day_chart(
    title: &str,
    days: &[NaiveDate],
    series: &[Series],
    kind: Kind,
    axis: Axis,
    partial: Option<usize>,
) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let n = days.len().max(1);
        let top = match kind {
            Kind::Lines => series
                .iter()
                .flat_map(|s| s.values.iter().flatten())
                .fold(0.0_f64, |a, &b| a.max(b)),
            Kind::StackedBars => (0..n)
                .map(|i| {
                    series
                        .iter()
                        .filter_map(|s| s.values.get(i).copied().flatten())
                        .sum::<f64>()
                })
                .fold(0.0_f64, f64::max),
        };
        let top = match axis {
            // Headroom above the data for the legend.
            Axis::Percent => 1.3,
            Axis::Number if top <= 0.0 => 1.0,
            Axis::Number => top * 1.35,
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 19))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5_f64..(n as f64 - 0.5), 0.0_f64..top)
            .map_err(chart_error)?;
        let day_label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() > 0.01 || i < 0.0 {
                return String::new();
            }
            days.get(i as usize)
                .map(|d| d.format("%m-%d").to_string())
                .unwrap_or_default()
        };
        let y_label = |y: &f64| match axis {
            Axis::Percent if *y > 1.0 => String::new(),
            Axis::Percent => format!("{:.0}%", y * 100.0),
            Axis::Number if top >= 10_000.0 => format!("{:.0}k", y / 1000.0),
            Axis::Number => format!("{y:.0}"),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n.min(10))
            .x_label_formatter(&day_label)
            .y_labels(6)
            .label_style(("sans-serif", 13))
            .y_label_formatter(&y_label)
            .light_line_style(WHITE)
            .draw()
            .map_err(chart_error)?;
        if let Some(p) = partial {
            let p = p as f64;
            chart
                .draw_series([Rectangle::new(
                    [(p - 0.5, 0.0), (p + 0.5, top)],
                    RGBColor(230, 230, 230).filled(),
                )])
                .map_err(chart_error)?;
            let anchor = plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Right,
                plotters::style::text_anchor::VPos::Top,
            );
            chart
                .draw_series([Text::new(
                    "partial day",
                    (p + 0.45, top * 0.99),
                    ("sans-serif", 13)
                        .into_font()
                        .color(&RGBColor(90, 90, 90))
                        .pos(anchor),
                )])
                .map_err(chart_error)?;
        }
        match kind {
            Kind::Lines => {
                for (k, s) in series.iter().enumerate() {
                    let color = PALETTE[k % PALETTE.len()];
                    // A gap in the data breaks the line rather than bridging it.
                    let mut run: Vec<(f64, f64)> = Vec::new();
                    let mut runs = Vec::new();
                    for (i, v) in s.values.iter().enumerate() {
                        match v {
                            Some(v) => run.push((i as f64, *v)),
                            None if !run.is_empty() => runs.push(std::mem::take(&mut run)),
                            None => {}
                        }
                    }
                    if !run.is_empty() {
                        runs.push(run);
                    }
                    for run in &runs {
                        chart
                            .draw_series(LineSeries::new(
                                run.iter().copied(),
                                color.stroke_width(2),
                            ))
                            .map_err(chart_error)?;
                    }
                    chart
                        .draw_series(
                            runs.iter()
                                .flatten()
                                .map(|&p| Circle::new(p, 3, color.filled())),
                        )
                        .map_err(chart_error)?
                        .label(s.name.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                        });
                }
            }
            Kind::StackedBars => {
                let mut base = vec![0.0_f64; n];
                for (k, s) in series.iter().enumerate() {
                    let color = PALETTE[k % PALETTE.len()];
                    let bars: Vec<Rectangle<(f64, f64)>> = (0..n)
                        .filter_map(|i| {
                            let v = s.values.get(i).copied().flatten()?;
                            let bar = Rectangle::new(
                                [(i as f64 - 0.35, base[i]), (i as f64 + 0.35, base[i] + v)],
                                color.filled(),
                            );
                            base[i] += v;
                            Some(bar)
                        })
                        .collect();
                    chart
                        .draw_series(bars)
                        .map_err(chart_error)?
                        .label(s.name.as_str())
                        .legend(move |(x, y)| {
                            Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                        });
                }
            }
        }
        if !series.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(chart_error)?;
        }
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_a_shape_per_value() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let days = [d("2026-11-20"), d("2026-11-21"), d("2026-11-22")];
        let series = [
            Series {
                name: "EU · EUR".into(),
                values: vec![Some(10.0), None, Some(30.0)],
            },
            Series {
                name: "NA".into(),
                values: vec![Some(5.0), Some(7.0), Some(1.0)],
            },
        ];
        let lines = day_chart(
            "Revenue",
            &days,
            &series,
            Kind::Lines,
            Axis::Number,
            Some(2),
        )
        .unwrap();
        assert!(lines.starts_with("<svg"), "{lines}");
        assert_eq!(lines.matches("<circle").count(), 5, "a marker per value");
        assert!(lines.contains("partial day") && lines.contains("EU · EUR"));
        let bars = day_chart(
            "Orders",
            &days,
            &series,
            Kind::StackedBars,
            Axis::Percent,
            None,
        )
        .unwrap();
        assert!(!bars.contains("partial day"));
        assert!(bars.contains("100%"), "a percent axis");
    }
}
