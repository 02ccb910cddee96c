//! Pictures of training, as PNG files: the training curves of each epoch. The confusion matrix
//! (evaluation's picture too) and the drawing helpers are `lakecat_core::plots`.

use std::path::Path;

pub use lakecat_core::plots::confusion_matrix;
use lakecat_core::plots::{FONT, plot_error, render};
use plotters::prelude::*;

use crate::fit::EpochRecord;
use crate::{Error, Result};

/// Loss (left) and validation accuracies (right) per epoch, with the epoch where the objective
/// switches to the hierarchical loss marked.
pub fn training_curves(history: &[EpochRecord], path: &Path) -> Result<()> {
    if history.is_empty() {
        return Err(Error::Plot("no epochs to plot".into()));
    }
    Ok(render(path, (1200, 480), |root| {
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
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metrics, Scored};
    use lakecat_core::Taxonomy;

    /// The confusion matrix has its own test in `lakecat_core::plots`.
    #[test]
    fn draws_the_training_curves() {
        let taxonomy =
            Taxonomy::from_paths("t", (0..6).map(|i| vec![format!("Group {}", i / 3), format!("Class {i}")])).unwrap();
        let classes = taxonomy.leaves();
        let scored: Vec<Scored> =
            (0..60).map(|i| Scored { truth: classes[i % 6], ranked: vec![classes[i % 6]] }).collect();
        let dir = tempfile::tempdir().unwrap();
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
