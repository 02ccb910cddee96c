//! Pictures of evaluation as PNG files: a confusion matrix grouped by parent category, readable
//! at 50+ classes (training's curves draw with the same helpers).
//!
//! Drawn with plotters into an in-memory bitmap and written with the `image` crate; text uses a
//! font embedded in the binary (Ubuntu Light from `epaint_default_fonts`), so no system fonts
//! are needed.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::metrics::Confusion;
use crate::{Error, Result, Taxonomy};

/// The embedded font's family name.
pub const FONT: &str = "sans-serif";

fn fonts() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok =
        *REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT).is_ok());
    if ok { Ok(()) } else { Err(Error::Plot("the embedded font could not be loaded".into())) }
}

/// A drawing error as lakecat's error.
pub fn plot_error(error: impl std::fmt::Display) -> Error {
    Error::Plot(error.to_string())
}

/// Draws into a white `width`×`height` RGB canvas with `draw`, then writes it as PNG to `path`.
pub fn render(
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
    use crate::metrics::Scored;

    #[test]
    fn draws_a_confusion_matrix_of_sixty_classes() {
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
    }
}
