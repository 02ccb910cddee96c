//! Image preprocessing: bytes → decoded RGB → resized → normalized, written straight into the
//! model's input tensor. One implementation for training and scoring, driven by the bundle's
//! [`ImageSpec`], so the two cannot disagree.

use std::io::Cursor;

use fast_image_resize::{self as fir, images::Image as FirImage, images::ImageRef as FirImageRef};
use image::{DynamicImage, ImageFormat, ImageReader};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How images become the model's image input. Stored in the bundle as `image.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageSpec {
    pub width: u32,
    pub height: u32,
    pub resize_filter: ResizeFilter,
    /// `stretch` to the target size, or `center_crop` to its aspect ratio first.
    pub fit: Fit,
    pub channel_order: ChannelOrder,
    pub layout: Layout,
    /// Per-channel mean and standard deviation applied to values scaled to [0, 1], in RGB order.
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Transparent pixels are composited over this colour.
    pub background: [u8; 3],
    /// Images with more pixels than this are refused before decoding (decompression bombs).
    pub max_pixels: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeFilter {
    Nearest,
    Bilinear,
    CatmullRom,
    Lanczos3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    Stretch,
    CenterCrop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

/// `nchw` = planes (PyTorch/ONNX convention), `nhwc` = interleaved pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    Nchw,
    Nhwc,
}

impl ImageSpec {
    /// ImageNet normalisation at `size`×`size`, bilinear, stretched, NCHW, RGB.
    pub fn imagenet(size: u32) -> Self {
        Self {
            width: size,
            height: size,
            resize_filter: ResizeFilter::Bilinear,
            fit: Fit::Stretch,
            channel_order: ChannelOrder::Rgb,
            layout: Layout::Nchw,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            background: [255, 255, 255],
            max_pixels: 64 * 1024 * 1024,
        }
    }

    /// Shape of the input tensor for `batch` images.
    pub fn tensor_shape(&self, batch: usize) -> [usize; 4] {
        let (w, h) = (self.width as usize, self.height as usize);
        match self.layout {
            Layout::Nchw => [batch, 3, h, w],
            Layout::Nhwc => [batch, h, w, 3],
        }
    }

    /// Number of f32 values one image occupies in the tensor.
    pub fn values_per_image(&self) -> usize {
        3 * self.width as usize * self.height as usize
    }

    pub fn validate(&self) -> Result<()> {
        if self.width == 0 || self.height == 0 {
            return Err(Error::ImageSpec(format!("target size {}x{} is empty", self.width, self.height)));
        }
        if self.std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(Error::ImageSpec(format!("std {:?} must be positive", self.std)));
        }
        if self.max_pixels == 0 {
            return Err(Error::ImageSpec("max_pixels must be positive".into()));
        }
        Ok(())
    }
}

/// Why one image could not be turned into model input. Shown in the row's `error` field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("image is empty (0 bytes)")]
    Empty,
    #[error("bytes are not a supported image (JPEG, PNG, WebP, GIF, BMP, TIFF); they start with {0}")]
    UnknownFormat(String),
    #[error("image is {width}x{height} = {pixels} pixels, over the limit of {limit}")]
    TooManyPixels { width: u32, height: u32, pixels: u64, limit: u64 },
    #[error(
        "JPEG has {scans} scans, over the limit of {limit} (a progressive JPEG has about 10; each scan \
         costs a full decoding pass)"
    )]
    TooManyScans { scans: usize, limit: usize },
    #[error("truncated {0} (the file ends before the image data does)")]
    Truncated(&'static str),
    #[error("cannot decode {format}: {message}")]
    Decode { format: &'static str, message: String },
}

/// Turns encoded images into normalized tensor slices according to an [`ImageSpec`].
#[derive(Debug, Clone)]
pub struct ImagePreprocessor {
    spec: ImageSpec,
    /// Per channel (in output order): the normalized value of each 8-bit level.
    lookup: [[f32; 256]; 3],
}

impl ImagePreprocessor {
    pub fn new(spec: ImageSpec) -> Result<Self> {
        spec.validate()?;
        let mut lookup = [[0.0; 256]; 3];
        for (out_channel, table) in lookup.iter_mut().enumerate() {
            let rgb_channel = match spec.channel_order {
                ChannelOrder::Rgb => out_channel,
                ChannelOrder::Bgr => 2 - out_channel,
            };
            for (level, value) in table.iter_mut().enumerate() {
                *value = (level as f32 / 255.0 - spec.mean[rgb_channel]) / spec.std[rgb_channel];
            }
        }
        Ok(Self { spec, lookup })
    }

    pub fn spec(&self) -> &ImageSpec {
        &self.spec
    }

    /// Decodes, resizes and normalizes one image into `out` (length
    /// [`ImageSpec::values_per_image`]).
    pub fn preprocess_into(&self, bytes: &[u8], out: &mut [f32]) -> Result<(), ImageError> {
        let rgb = self.decode_rgb(bytes)?;
        let resized = self.resize(&rgb)?;
        self.normalize_into(&resized, out);
        Ok(())
    }

    /// Preprocesses a batch in parallel on the rayon pool. `out` holds `images.len()` images
    /// back to back; `None` entries (no image) are left as zeros, which is the training mean
    /// after normalization. Each image gets its own result: one bad image never fails the rest.
    pub fn preprocess_batch(&self, images: &[Option<&[u8]>], out: &mut [f32]) -> Vec<Result<(), ImageError>> {
        let per_image = self.spec.values_per_image();
        assert_eq!(out.len(), images.len() * per_image, "output tensor does not match the batch");
        out.par_chunks_mut(per_image)
            .zip(images.par_iter())
            .map(|(slot, image)| match image {
                Some(bytes) => {
                    let result = self.preprocess_into(bytes, slot);
                    if result.is_err() {
                        slot.fill(0.0);
                    }
                    result
                }
                None => {
                    slot.fill(0.0);
                    Ok(())
                }
            })
            .collect()
    }

    /// Decodes `bytes` exactly as scoring does (same checks and limits) and returns the image's
    /// width and height: what an image audit needs to know before training on it.
    pub fn inspect(&self, bytes: &[u8]) -> Result<(u32, u32), ImageError> {
        self.decode_rgb(bytes)?;
        let reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|error| ImageError::Decode { format: "image", message: error.to_string() })?;
        reader.into_dimensions().map_err(|error| ImageError::Decode { format: "image", message: error.to_string() })
    }

    /// Decodes to 8-bit RGB, refusing oversized images before allocating for them.
    fn decode_rgb(&self, bytes: &[u8]) -> Result<RgbImage, ImageError> {
        if bytes.is_empty() {
            return Err(ImageError::Empty);
        }
        let format = image::guess_format(bytes).map_err(|_| ImageError::UnknownFormat(hex_prefix(bytes)))?;
        let mut size_checked = false;
        if format == ImageFormat::Jpeg {
            if !jpeg_has_end_marker(bytes) {
                return Err(ImageError::Truncated("JPEG"));
            }
            // Decoding work grows with the number of scans, not the file size: a small
            // progressive JPEG with thousands of scans would cost seconds of CPU each.
            let scans = jpeg_scans(bytes);
            if scans > MAX_JPEG_SCANS {
                return Err(ImageError::TooManyScans { scans, limit: MAX_JPEG_SCANS });
            }
            match self.decode_jpeg_downscaled(bytes)? {
                JpegFastPath::Decoded(rgb) => return Ok(rgb),
                JpegFastPath::SizeChecked => size_checked = true,
                JpegFastPath::Unreadable => {}
            }
        }
        let format_name = format_name(format);
        if !size_checked {
            let reader = ImageReader::with_format(Cursor::new(bytes), format);
            let (width, height) = reader.into_dimensions().map_err(|error| decode_error(format_name, error))?;
            self.check_pixels(width, height)?;
        }
        let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(self.spec.max_pixels.saturating_mul(16));
        reader.limits(limits);
        let decoded = reader.decode().map_err(|error| decode_error(format_name, error))?;
        Ok(self.to_rgb(decoded))
    }

    fn check_pixels(&self, width: u32, height: u32) -> Result<(), ImageError> {
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.spec.max_pixels {
            return Err(ImageError::TooManyPixels { width, height, pixels, limit: self.spec.max_pixels });
        }
        Ok(())
    }

    /// Reads a JPEG's header once, refuses it if oversized, and decodes one at least twice the
    /// target size at 1/2, 1/4 or 1/8 scale by the DCT, which is far cheaper than decoding it
    /// whole and resizing. Anything this decoder cannot do is left to the general path, which
    /// names the error.
    fn decode_jpeg_downscaled(&self, bytes: &[u8]) -> Result<JpegFastPath, ImageError> {
        let mut decoder = jpeg_decoder::Decoder::new(bytes);
        let Some(info) = decoder.read_info().ok().and_then(|()| decoder.info()) else {
            return Ok(JpegFastPath::Unreadable);
        };
        let (width, height) = (u32::from(info.width), u32::from(info.height));
        self.check_pixels(width, height)?;
        if width < 2 * self.spec.width || height < 2 * self.spec.height {
            return Ok(JpegFastPath::SizeChecked);
        }
        let (Ok(target_w), Ok(target_h)) = (u16::try_from(self.spec.width), u16::try_from(self.spec.height)) else {
            return Ok(JpegFastPath::SizeChecked);
        };
        let Ok((width, height)) = decoder.scale(target_w, target_h) else {
            return Ok(JpegFastPath::SizeChecked);
        };
        let Ok(pixels) = decoder.decode() else {
            return Ok(JpegFastPath::SizeChecked);
        };
        let data = match info.pixel_format {
            jpeg_decoder::PixelFormat::RGB24 => pixels,
            jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
            _ => return Ok(JpegFastPath::SizeChecked),
        };
        Ok(JpegFastPath::Decoded(RgbImage { width: u32::from(width), height: u32::from(height), data }))
    }

    fn to_rgb(&self, image: DynamicImage) -> RgbImage {
        let (width, height) = (image.width(), image.height());
        let data = if image.color().has_alpha() {
            let [br, bg, bb] = self.spec.background.map(u32::from);
            image
                .into_rgba8()
                .pixels()
                .flat_map(|p| {
                    let [r, g, b, a] = p.0.map(u32::from);
                    let blend = |c: u32, back: u32| ((c * a + back * (255 - a) + 127) / 255) as u8;
                    [blend(r, br), blend(g, bg), blend(b, bb)]
                })
                .collect()
        } else {
            image.into_rgb8().into_raw()
        };
        RgbImage { width, height, data }
    }

    fn resize(&self, rgb: &RgbImage) -> Result<RgbImage, ImageError> {
        let (width, height) = (self.spec.width, self.spec.height);
        if rgb.width == width && rgb.height == height {
            return Ok(rgb.clone());
        }
        let internal = |message: String| ImageError::Decode { format: "image", message };
        let source = FirImageRef::new(rgb.width, rgb.height, &rgb.data, fir::PixelType::U8x3)
            .map_err(|error| internal(format!("bad decoded buffer: {error}")))?;
        let mut target = FirImage::new(width, height, fir::PixelType::U8x3);
        let algorithm = match self.spec.resize_filter {
            ResizeFilter::Nearest => fir::ResizeAlg::Nearest,
            ResizeFilter::Bilinear => fir::ResizeAlg::Convolution(fir::FilterType::Bilinear),
            ResizeFilter::CatmullRom => fir::ResizeAlg::Convolution(fir::FilterType::CatmullRom),
            ResizeFilter::Lanczos3 => fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3),
        };
        let mut options = fir::ResizeOptions::new().resize_alg(algorithm);
        if self.spec.fit == Fit::CenterCrop {
            options = options.fit_into_destination(Some((0.5, 0.5)));
        }
        thread_local! {
            // The resizer keeps its scratch buffers between images of a batch.
            static RESIZER: std::cell::RefCell<fir::Resizer> = std::cell::RefCell::new(fir::Resizer::new());
        }
        RESIZER
            .with_borrow_mut(|resizer| resizer.resize(&source, &mut target, &options))
            .map_err(|error| internal(format!("resize failed: {error}")))?;
        Ok(RgbImage { width, height, data: target.into_vec() })
    }

    fn normalize_into(&self, rgb: &RgbImage, out: &mut [f32]) {
        let plane = (rgb.width * rgb.height) as usize;
        debug_assert_eq!(out.len(), plane * 3);
        let [first, second, third] = &self.lookup;
        // Output channel c reads RGB channel c (or 2 - c for BGR); the lookup already folds in
        // the order, so only the source index flips here.
        let (c0, c2) = match self.spec.channel_order {
            ChannelOrder::Rgb => (0, 2),
            ChannelOrder::Bgr => (2, 0),
        };
        match self.spec.layout {
            Layout::Nchw => {
                let (p0, rest) = out.split_at_mut(plane);
                let (p1, p2) = rest.split_at_mut(plane);
                for (i, pixel) in rgb.data.chunks_exact(3).enumerate() {
                    p0[i] = first[pixel[c0] as usize];
                    p1[i] = second[pixel[1] as usize];
                    p2[i] = third[pixel[c2] as usize];
                }
            }
            Layout::Nhwc => {
                for (slot, pixel) in out.chunks_exact_mut(3).zip(rgb.data.chunks_exact(3)) {
                    slot[0] = first[pixel[c0] as usize];
                    slot[1] = second[pixel[1] as usize];
                    slot[2] = third[pixel[c2] as usize];
                }
            }
        }
    }
}

/// What [`ImagePreprocessor::decode_jpeg_downscaled`] did with a JPEG.
enum JpegFastPath {
    Decoded(RgbImage),
    /// Its size is within the limit; the general path decodes it at full size.
    SizeChecked,
    /// This decoder cannot read its header; the general path decodes it or names the error.
    Unreadable,
}

#[derive(Debug, Clone)]
struct RgbImage {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

fn decode_error(format: &'static str, error: image::ImageError) -> ImageError {
    let message = error.to_string();
    let lower = message.to_lowercase();
    let truncated = ["end of file", "eof", "truncated", "not enough bytes", "unexpected end"];
    if truncated.iter().any(|marker| lower.contains(marker)) {
        ImageError::Truncated(format)
    } else {
        ImageError::Decode { format, message }
    }
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        ImageFormat::WebP => "WebP",
        ImageFormat::Gif => "GIF",
        ImageFormat::Bmp => "BMP",
        ImageFormat::Tiff => "TIFF",
        _ => "image",
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    shown.join(" ")
}

/// The most scans a JPEG may have. Encoders write 1 (baseline) or about 10 (progressive);
/// libjpeg-turbo's tools refuse over 100 for the same reason.
pub const MAX_JPEG_SCANS: usize = 100;

/// The number of start-of-scan markers (FF DA). Entropy-coded data escapes FF bytes, so the
/// pair appears only as a marker.
fn jpeg_scans(bytes: &[u8]) -> usize {
    bytes.windows(2).filter(|w| w == &[0xFF, 0xDA]).count()
}

/// A complete JPEG has an end-of-image marker (FF D9) after its first scan. Entropy-coded data
/// escapes FF bytes, so the marker cannot appear there by accident; decoders otherwise fill the
/// missing part with grey and report success.
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let start_of_scan = bytes.windows(2).position(|w| w == [0xFF, 0xDA]);
    let end_of_image = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]);
    matches!((start_of_scan, end_of_image), (Some(sos), Some(eoi)) if eoi > sos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, Rgb, Rgba};

    fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut bytes = Vec::new();
        image.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
        bytes
    }

    fn gradient(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(ImageBuffer::from_fn(width, height, |x, y| {
            Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 128])
        }))
    }

    fn spec(size: u32) -> ImageSpec {
        ImageSpec { mean: [0.0; 3], std: [1.0; 3], ..ImageSpec::imagenet(size) }
    }

    fn run(spec: ImageSpec, bytes: &[u8]) -> Result<Vec<f32>, ImageError> {
        let preprocessor = ImagePreprocessor::new(spec).unwrap();
        let mut out = vec![0.0; preprocessor.spec().values_per_image()];
        preprocessor.preprocess_into(bytes, &mut out).map(|()| out)
    }

    #[test]
    fn png_values_land_in_nchw_planes() {
        let image = DynamicImage::ImageRgb8(ImageBuffer::from_pixel(4, 4, Rgb([255, 0, 51])));
        let out = run(spec(4), &encode(image, ImageFormat::Png)).unwrap();
        assert_eq!(&out[..16], &[1.0; 16]);
        assert_eq!(&out[16..32], &[0.0; 16]);
        assert!((out[32] - 0.2).abs() < 1e-6);
    }

    #[test]
    fn bgr_and_nhwc_reorder_channels() {
        let image = DynamicImage::ImageRgb8(ImageBuffer::from_pixel(2, 2, Rgb([255, 0, 0])));
        let spec = ImageSpec { channel_order: ChannelOrder::Bgr, layout: Layout::Nhwc, ..spec(2) };
        let out = run(spec, &encode(image, ImageFormat::Png)).unwrap();
        assert_eq!(&out[..3], &[0.0, 0.0, 1.0]);
    }

    #[test]
    fn imagenet_normalisation() {
        let image = DynamicImage::ImageRgb8(ImageBuffer::from_pixel(2, 2, Rgb([0, 0, 0])));
        let out = run(ImageSpec::imagenet(2), &encode(image, ImageFormat::Png)).unwrap();
        assert!((out[0] - (-0.485 / 0.229)).abs() < 1e-5);
    }

    #[test]
    fn grayscale_sixteen_bit_and_alpha_become_rgb() {
        let gray = DynamicImage::ImageLuma8(ImageBuffer::from_pixel(3, 3, Luma([255])));
        assert!(run(spec(3), &encode(gray, ImageFormat::Png)).unwrap().iter().all(|v| *v == 1.0));
        let deep = DynamicImage::ImageRgb16(ImageBuffer::from_pixel(3, 3, Rgb([65535, 0, 0])));
        let out = run(spec(3), &encode(deep, ImageFormat::Png)).unwrap();
        assert_eq!((out[0], out[9]), (1.0, 0.0));
        // Fully transparent black over the white background is white.
        let clear = DynamicImage::ImageRgba8(ImageBuffer::from_pixel(3, 3, Rgba([0, 0, 0, 0])));
        assert!(run(spec(3), &encode(clear, ImageFormat::Png)).unwrap().iter().all(|v| *v == 1.0));
    }

    #[test]
    fn cmyk_and_progressive_jpegs_decode() {
        for bytes in [
            &include_bytes!("../../tests/data/images/cmyk.jpg")[..],
            include_bytes!("../../tests/data/images/progressive.jpg"),
        ] {
            let out = run(spec(16), bytes).unwrap();
            assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
            assert!(out.iter().any(|v| *v < 0.9), "not a blank image");
        }
    }

    /// The mean colour of each decoded test image, pinned (both show the same grey and yellow
    /// shoe on white, checked by eye when pinned): a decoder that inverted CMYK, dropped a
    /// progressive scan or swapped channels would still give values in range.
    #[test]
    fn cmyk_and_progressive_jpegs_decode_to_their_colours() {
        let preprocessor = ImagePreprocessor::new(spec(16)).unwrap();
        for (name, bytes, expected) in [
            ("cmyk", &include_bytes!("../../tests/data/images/cmyk.jpg")[..], [219.23, 216.53, 206.13]),
            ("progressive", include_bytes!("../../tests/data/images/progressive.jpg"), [218.10, 215.90, 205.08]),
        ] {
            let rgb = preprocessor.decode_rgb(bytes).unwrap();
            let mut mean = [0.0f64; 3];
            for pixel in rgb.data.chunks_exact(3) {
                for (sum, value) in mean.iter_mut().zip(pixel) {
                    *sum += f64::from(*value);
                }
            }
            let mean = mean.map(|sum| sum / (rgb.data.len() / 3) as f64);
            assert!(mean.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1.0), "{name}: mean RGB {mean:?}");
        }
    }

    #[test]
    fn resizes_jpeg_and_webp_of_any_size() {
        for (format, size) in
            [(ImageFormat::Jpeg, (300, 225)), (ImageFormat::WebP, (31, 17)), (ImageFormat::Jpeg, (1000, 800))]
        {
            let out = run(spec(16), &encode(gradient(size.0, size.1), format)).unwrap();
            assert_eq!(out.len(), 3 * 16 * 16);
            // Left edge dark, right edge bright in the red plane.
            assert!(out[0] < 0.2 && out[15] > 0.8, "{format:?} {size:?}: {} {}", out[0], out[15]);
        }
    }

    #[test]
    fn downscaled_jpeg_decode_matches_full_decode() {
        let bytes = encode(gradient(640, 640), ImageFormat::Jpeg);
        let fast = run(spec(32), &bytes).unwrap();
        let preprocessor = ImagePreprocessor::new(spec(32)).unwrap();
        let reader = ImageReader::with_format(Cursor::new(&bytes), ImageFormat::Jpeg);
        let full = preprocessor.to_rgb(reader.decode().unwrap());
        let mut slow = vec![0.0; 3 * 32 * 32];
        preprocessor.normalize_into(&preprocessor.resize(&full).unwrap(), &mut slow);
        let max_diff = fast.iter().zip(&slow).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(max_diff < 0.05, "max diff {max_diff}");
    }

    #[test]
    fn bad_bytes_are_named() {
        assert_eq!(run(spec(4), b"").unwrap_err(), ImageError::Empty);
        let not_image = run(spec(4), b"hello, world").unwrap_err();
        assert_eq!(
            not_image.to_string(),
            "bytes are not a supported image (JPEG, PNG, WebP, GIF, BMP, TIFF); they start with 68 65 6c 6c 6f 2c 20 77"
        );
        let jpeg = encode(gradient(64, 64), ImageFormat::Jpeg);
        assert_eq!(run(spec(4), &jpeg[..jpeg.len() / 2]).unwrap_err(), ImageError::Truncated("JPEG"));
        let png = encode(gradient(64, 64), ImageFormat::Png);
        assert!(matches!(
            run(spec(4), &png[..png.len() / 2]).unwrap_err(),
            ImageError::Truncated("PNG") | ImageError::Decode { .. }
        ));
        let mut corrupt = png.clone();
        corrupt[40..60].fill(0xAB);
        assert!(run(spec(4), &corrupt).is_err());
    }

    #[test]
    fn refuses_decompression_bombs_before_decoding() {
        // 69 bytes that declare 60000x60000 pixels (Pillow refuses it as a decompression bomb too).
        let bomb = include_bytes!("../../tests/data/images/bomb.png");
        let error = run(spec(4), bomb).unwrap_err();
        assert_eq!(
            error,
            ImageError::TooManyPixels { width: 60_000, height: 60_000, pixels: 3_600_000_000, limit: 64 * 1024 * 1024 }
        );
    }

    #[test]
    fn jpeg_size_limit_applies_on_both_jpeg_paths() {
        let jpeg = encode(gradient(64, 64), ImageFormat::Jpeg);
        // Target 4 px: the downscaling decoder reads the header; 64 px: the image is decoded at
        // full size. Both refuse it before decoding, from the header read once.
        for size in [4, 64] {
            let limited = ImageSpec { max_pixels: 1000, ..spec(size) };
            assert_eq!(
                run(limited, &jpeg).unwrap_err(),
                ImageError::TooManyPixels { width: 64, height: 64, pixels: 4096, limit: 1000 }
            );
        }
    }

    #[test]
    fn jpegs_with_too_many_scans_are_refused_before_decoding() {
        let jpeg = encode(gradient(64, 64), ImageFormat::Jpeg);
        let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        let eoi = jpeg.len() - 2;
        // The scan repeated: each copy is a complete scan a decoder would have to run.
        let mut many = jpeg[..sos].to_vec();
        for _ in 0..3000 {
            many.extend_from_slice(&jpeg[sos..eoi]);
        }
        many.extend_from_slice(&jpeg[eoi..]);
        let started = std::time::Instant::now();
        assert_eq!(run(spec(32), &many).unwrap_err(), ImageError::TooManyScans { scans: 3000, limit: MAX_JPEG_SCANS });
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "refused without decoding");
        assert!(run(spec(32), &jpeg).is_ok());
    }

    #[test]
    fn batch_keeps_going_past_bad_images() {
        let preprocessor = ImagePreprocessor::new(spec(8)).unwrap();
        let good = encode(gradient(20, 20), ImageFormat::Png);
        let inputs = [Some(&good[..]), Some(&b"junk"[..]), None, Some(&good[..])];
        let mut out = vec![9.0; 4 * 3 * 64];
        let results = preprocessor.preprocess_batch(&inputs, &mut out);
        assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok() && results[3].is_ok());
        assert!(out[192..576].iter().all(|v| *v == 0.0), "bad and missing images leave zeros");
        assert_eq!(out[..192], out[576..]);
    }
}
