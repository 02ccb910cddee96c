//! Pictures of training and evaluation, as PNG files: the training curves of each epoch and a
//! confusion matrix grouped by parent category, readable at 50+ classes.
//!
//! Drawn with plotters into an in-memory bitmap and written with the `image` crate; text uses a
//! font embedded in the binary (Ubuntu Light from `epaint_default_fonts`), so no system fonts
//! are needed.

use std::path::Path;
use std::sync::OnceLock;

use lakecat_core::Taxonomy;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::metrics::Confusion;
use crate::trainer::EpochRecord;
use crate::{Error, Result};

const FONT: &str = "sans-serif";

fn fonts() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok =
        *REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT).is_ok());
    if ok { Ok(()) } else { Err(Error::Plot("the embedded font could not be loaded".into())) }
}

fn plot_error(error: impl std::fmt::Display) -> Error {
    Error::Plot(error.to_string())
}

/// Draws into a white `width`×`height` RGB canvas with `draw`, then writes it as PNG to `path`.
fn render(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    fonts()?;
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(plot_error)?;
    }
    let image = image::RgbImage::from_raw(width, height, pixels).ok_or_else(|| plot_error("canvas size mismatch"))?;
    image.save(path).map_err(|error| Error::Plot(format!("cannot write {}: {error}", path.display())))
}

/// Loss (left) and validation accuracies (right) per epoch, with the epoch where the objective
/// switches to the hierarchical loss marked.
pub fn training_curves(history: &[EpochRecord], path: &Path) -> Result<()> {
    if history.is_empty() {
        return Err(Error::Plot("no epochs to plot".into()));
    }
    render(path, (1200, 480), |root| {
        let area = root.titled("lakecat training", (FONT, 24)).map_err(plot_error)?;
        let (left, right) = area.split_horizontally(600);
        let epochs = history.len() as f64;
        let switch = history.iter().position(|record| record.objective == "hierarchical");

        let max_loss = history.iter().flat_map(|r| [r.train_loss, r.validation_loss]).fold(0.0f64, f64::max).max(1e-3);
        let mut loss = ChartBuilder::on(&left)
            .caption("loss", (FONT, 18))
            .margin(16)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(0.5..epochs + 0.5, 0.0..max_loss * 1.1)
            .map_err(plot_error)?;
        loss.configure_mesh().x_desc("epoch").label_style((FONT, 13)).draw().map_err(plot_error)?;
        let series = [
            ("train (objective)", BLUE, history.iter().map(|r| r.train_loss).collect::<Vec<_>>()),
            ("validation leaf cross-entropy", RED, history.iter().map(|r| r.validation_loss).collect()),
        ];
        for (label, colour, values) in series {
            let points: Vec<(f64, f64)> = values.iter().enumerate().map(|(i, v)| (i as f64 + 1.0, *v)).collect();
            loss.draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
                .map_err(plot_error)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
            loss.draw_series(points.into_iter().map(|p| Circle::new(p, 3, colour.filled()))).map_err(plot_error)?;
        }
        if let Some(switch) = switch {
            let x = switch as f64 + 0.5;
            loss.draw_series(std::iter::once(PathElement::new(vec![(x, 0.0), (x, max_loss * 1.1)], BLACK.mix(0.4))))
                .map_err(plot_error)?
                .label("hierarchical loss from here")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.4)));
        }
        loss.configure_series_labels()
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;

        let low = history
            .iter()
            .flat_map(|r| [r.train_top1, r.validation.top1, r.validation.fallback])
            .fold(1.0f64, f64::min)
            .min(0.9);
        let mut accuracy = ChartBuilder::on(&right)
            .caption("accuracy", (FONT, 18))
            .margin(16)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(0.5..epochs + 0.5, (low - 0.02).max(0.0)..1.0)
            .map_err(plot_error)?;
        accuracy.configure_mesh().x_desc("epoch").label_style((FONT, 13)).draw().map_err(plot_error)?;
        let series = [
            ("train top-1", BLUE, history.iter().map(|r| r.train_top1).collect::<Vec<_>>()),
            ("validation top-1", RED, history.iter().map(|r| r.validation.top1).collect()),
            (
                "validation level 1",
                GREEN,
                history.iter().map(|r| r.validation.per_level.first().copied().unwrap_or(0.0)).collect(),
            ),
            ("validation hierarchy win", MAGENTA, history.iter().map(|r| r.validation.hierarchy_win).collect()),
            ("validation fallback", CYAN, history.iter().map(|r| r.validation.fallback).collect()),
        ];
        for (label, colour, values) in series {
            let points: Vec<(f64, f64)> = values.iter().enumerate().map(|(i, v)| (i as f64 + 1.0, *v)).collect();
            accuracy
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                .map_err(plot_error)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        }
        accuracy
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        Ok(())
    })
}

/// The confusion matrix with rows (truth) normalised to 1, classes ordered by path so that
/// siblings sit together, lines between parent groups and each group's name, and the raw counts
/// written in the cells when they are large enough to read.
pub fn confusion_matrix(confusion: &Confusion, taxonomy: &Taxonomy, title: &str, path: &Path) -> Result<()> {
    let n = confusion.classes.len();
    if n == 0 {
        return Err(Error::Plot("no classes to plot".into()));
    }
    let mut order: Vec<usize> = (0..n).collect();
    let paths: Vec<Vec<&str>> = confusion.classes.iter().map(|&id| taxonomy.path(id)).collect();
    order.sort_by(|&a, &b| paths[a].cmp(&paths[b]));
    let parent = |i: usize| paths[i][..paths[i].len().saturating_sub(1)].join(" > ");
    let cell: i32 = if n <= 20 {
        28
    } else if n <= 60 {
        16
    } else {
        10
    };
    let label_width = 260i32;
    let top = 90i32;
    let side = cell * n as i32;
    let size = ((label_width + side + 40) as u32, (top + side + 40) as u32);
    let font = (cell - 4).clamp(8, 14);
    render(path, size, |root| {
        root.draw(&Text::new(title.to_string(), (12, 10), (FONT, 20))).map_err(plot_error)?;
        root.draw(&Text::new(
            "rows: true category, columns: predicted (same order); colour: share of the row",
            (12, 38),
            (FONT, 14),
        ))
        .map_err(plot_error)?;
        for (row_pos, &row) in order.iter().enumerate() {
            let total: u64 = confusion.counts[row].iter().sum();
            let y = top + row_pos as i32 * cell;
            let leaf = paths[row].last().copied().unwrap_or("");
            root.draw(&Text::new(
                leaf.to_string(),
                (label_width - 6 - leaf.len() as i32 * font / 2, y + 1),
                (FONT, font),
            ))
            .map_err(plot_error)?;
            for (col_pos, &col) in order.iter().enumerate() {
                let count = confusion.counts[row][col];
                let share = if total == 0 { 0.0 } else { count as f64 / total as f64 };
                let x = label_width + col_pos as i32 * cell;
                let colour = if row == col {
                    RGBColor(255 - (share * 225.0) as u8, 255 - (share * 120.0) as u8, 255 - (share * 225.0) as u8)
                } else {
                    RGBColor(255, 255 - (share.sqrt() * 230.0) as u8, 255 - (share.sqrt() * 230.0) as u8)
                };
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], colour.filled())).map_err(plot_error)?;
                if count > 0 && cell >= 16 {
                    root.draw(&Text::new(count.to_string(), (x + 2, y + 2), (FONT, (cell / 2).max(8))))
                        .map_err(plot_error)?;
                }
            }
        }
        // Parent groups: a line before each new parent, its name above the columns.
        let mut previous = None;
        for (pos, &class) in order.iter().enumerate() {
            let group = parent(class);
            if previous.as_ref() != Some(&group) {
                let offset = pos as i32 * cell;
                let grey = BLACK.mix(0.6);
                root.draw(&PathElement::new(
                    vec![(label_width, top + offset), (label_width + side, top + offset)],
                    grey,
                ))
                .map_err(plot_error)?;
                root.draw(&PathElement::new(
                    vec![(label_width + offset, top), (label_width + offset, top + side)],
                    grey,
                ))
                .map_err(plot_error)?;
                let name = group.rsplit(" > ").next().unwrap_or("").to_string();
                root.draw(&Text::new(name, (label_width + offset + 2, top - 18 - (pos as i32 % 2) * 14), (FONT, 12)))
                    .map_err(plot_error)?;
                previous = Some(group);
            }
        }
        root.draw(&Rectangle::new([(label_width, top), (label_width + side, top + side)], BLACK.stroke_width(1)))
            .map_err(plot_error)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metrics, Scored};

    #[test]
    fn draws_a_confusion_matrix_and_curves() {
        let taxonomy =
            Taxonomy::from_paths("t", (0..60).map(|i| vec![format!("Group {}", i / 7), format!("Class {i}")])).unwrap();
        let classes = taxonomy.leaves();
        let scored: Vec<Scored> = (0..600)
            .map(|i| Scored { truth: classes[i % 60], ranked: vec![classes[(i + usize::from(i % 9 == 0)) % 60]] })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let matrix = dir.path().join("confusion.png");
        confusion_matrix(&Confusion::new(classes.clone(), &scored), &taxonomy, "test", &matrix).unwrap();
        let image = image::open(&matrix).unwrap();
        assert_eq!(image.width(), 260 + 16 * 60 + 40);

        let metrics = Metrics::compute(&taxonomy, &scored);
        let history: Vec<EpochRecord> = (0..3)
            .map(|epoch| EpochRecord {
                epoch: epoch + 1,
                objective: if epoch < 2 { "cross_entropy" } else { "hierarchical" },
                train_loss: 1.0 / (epoch + 1) as f64,
                train_top1: 0.5 + 0.1 * epoch as f64,
                validation_loss: 1.2 / (epoch + 1) as f64,
                validation: metrics.clone(),
                samples_per_second: 100.0,
            })
            .collect();
        let curves = dir.path().join("curves.png");
        training_curves(&history, &curves).unwrap();
        assert_eq!(image::open(&curves).unwrap().width(), 1200);
    }
}
