//! Image augmentation for the synthetic products that balancing adds (the original pipeline's
//! Keras `ImageDataGenerator` settings: rotation, brightness, shear, zoom, channel shift).
//!
//! Works on the already preprocessed NCHW tensor of one image, so augmented images need no
//! second decode: a random affine map (rotation, shear, zoom about the centre) resampled
//! bilinearly, then brightness and per-channel shifts on the [0, 1] scale, then the spec's
//! normalisation again. Pixels mapped from outside the image take the background colour.

use burn::config::Config;
use lakecat_core::ImageSpec;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Strength of each augmentation; each is drawn uniformly from `[-x, x]` (zoom and brightness
/// as factors `1 ± x`). All zero = no augmentation.
#[derive(Config, Debug, Copy, PartialEq)]
pub struct Augmentation {
    /// Rotation in degrees (±).
    #[config(default = 15.0)]
    pub rotation_degrees: f32,
    /// Brightness factor range (1 ± x).
    #[config(default = 0.2)]
    pub brightness: f32,
    /// Shear angle in degrees (±).
    #[config(default = 10.0)]
    pub shear_degrees: f32,
    /// Zoom factor range (1 ± x).
    #[config(default = 0.15)]
    pub zoom: f32,
    /// Shift of each channel, on the [0, 1] pixel scale (±).
    #[config(default = 0.05)]
    pub channel_shift: f32,
}

impl Augmentation {
    pub fn none() -> Self {
        Self { rotation_degrees: 0.0, brightness: 0.0, shear_degrees: 0.0, zoom: 0.0, channel_shift: 0.0 }
    }

    /// Writes an augmented copy of `image` (NCHW values of one image under `spec`) into `out`.
    pub fn apply(&self, image: &[f32], spec: &ImageSpec, seed: u64, out: &mut [f32]) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut draw = |limit: f32| if limit > 0.0 { rng.random_range(-limit..=limit) } else { 0.0 };
        let rotation = draw(self.rotation_degrees).to_radians();
        let shear = draw(self.shear_degrees).to_radians();
        let zoom = 1.0 + draw(self.zoom);
        let brightness = 1.0 + draw(self.brightness);
        let shifts = [draw(self.channel_shift), draw(self.channel_shift), draw(self.channel_shift)];

        let (width, height) = (spec.width as usize, spec.height as usize);
        let plane = width * height;
        // Output → source: the inverse of rotate·shear·zoom, about the image centre.
        let (sin, cos) = rotation.sin_cos();
        let tan = shear.tan();
        let (cx, cy) = ((width as f32 - 1.0) / 2.0, (height as f32 - 1.0) / 2.0);
        for c in 0..3 {
            let (mean, std) = (spec.mean[c], spec.std[c]);
            let background = f32::from(spec.background[c]) / 255.0;
            let source = &image[c * plane..(c + 1) * plane];
            for y in 0..height {
                for x in 0..width {
                    let (dx, dy) = (x as f32 - cx, y as f32 - cy);
                    // Undo the rotation, then the shear, then the zoom.
                    let (rx, ry) = (cos * dx + sin * dy, -sin * dx + cos * dy);
                    let (sx, sy) = ((rx - tan * ry) / zoom + cx, ry / zoom + cy);
                    let raw = bilinear(source, width, height, sx, sy).map_or(background, |v| v * std + mean);
                    let value = (raw * brightness + shifts[c]).clamp(0.0, 1.0);
                    out[c * plane + y * width + x] = (value - mean) / std;
                }
            }
        }
    }
}

/// The value at (x, y) interpolated from the four nearest pixels; `None` outside the image.
fn bilinear(plane: &[f32], width: usize, height: usize, x: f32, y: f32) -> Option<f32> {
    if x < 0.0 || y < 0.0 || x > (width - 1) as f32 || y > (height - 1) as f32 {
        return None;
    }
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(width - 1), (y0 + 1).min(height - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let at = |xx: usize, yy: usize| plane[yy * width + xx];
    let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
    let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
    Some(top * (1.0 - fy) + bottom * fy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(spec: &ImageSpec) -> Vec<f32> {
        let (w, h) = (spec.width as usize, spec.height as usize);
        (0..3 * w * h).map(|i| ((i % w) as f32 / w as f32 - spec.mean[i / (w * h)]) / spec.std[i / (w * h)]).collect()
    }

    #[test]
    fn no_augmentation_is_the_identity() {
        let spec = ImageSpec::imagenet(8);
        let image = gradient(&spec);
        let mut out = vec![0.0; image.len()];
        Augmentation::none().apply(&image, &spec, 1, &mut out);
        for (a, b) in image.iter().zip(&out) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn augmentation_is_seeded_and_changes_the_image() {
        let spec = ImageSpec::imagenet(16);
        let image = gradient(&spec);
        let (mut a, mut b, mut c) = (vec![0.0; image.len()], vec![0.0; image.len()], vec![0.0; image.len()]);
        let augmentation = Augmentation::new();
        augmentation.apply(&image, &spec, 3, &mut a);
        augmentation.apply(&image, &spec, 3, &mut b);
        augmentation.apply(&image, &spec, 4, &mut c);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, image);
        assert!(a.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn geometry_keeps_the_centre_and_fills_corners_with_the_background() {
        let spec = ImageSpec { mean: [0.0; 3], std: [1.0; 3], background: [0, 0, 0], ..ImageSpec::imagenet(5) };
        let image = vec![1.0; 75];
        let mut out = vec![0.0; 75];
        let turn = Augmentation { rotation_degrees: 45.0, zoom: 0.0, ..Augmentation::none() };
        let seed = (0..100).find(|&seed| {
            turn.apply(&image, &spec, seed, &mut out);
            out[0] == 0.0
        });
        assert!(seed.is_some(), "some rotation moves a corner outside the image");
        assert_eq!(out[12], 1.0, "the centre pixel stays");
    }
}
