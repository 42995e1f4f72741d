//! Image inputs: a PNG or JPEG becomes one row of a model's input, as the model's `[image]`
//! config says (size, colour mode, layout, value range).

use base64::Engine as _;
use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use lectern_core::{ColorMode, ImageLayout, ImageSpec};
use std::io::Cursor;

/// Largest side of an uploaded picture, before resizing.
const MAX_SIDE: u32 = 8192;
/// Most memory the decoder may allocate.
const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;

/// Decodes base64 text (optionally a `data:` URL) into bytes.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let payload = match text.split_once(";base64,") {
        Some((prefix, rest)) if prefix.starts_with("data:") => rest,
        _ => text,
    };
    let payload: String = payload.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(payload.as_bytes())
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(payload.as_bytes()))
        .map_err(|_| "is not base64 text".to_string())
}

/// The image's values for one input row, in the layout and range of `spec`, with the shape
/// of that row (without the batch dimension).
pub fn image_row(bytes: &[u8], spec: &ImageSpec) -> Result<(Vec<f64>, Vec<usize>), String> {
    let picture = decode(bytes)?;
    let (w, h) = (spec.width, spec.height);
    let picture = if picture.width() == w && picture.height() == h {
        picture
    } else {
        picture.resize_exact(w, h, FilterType::Triangle)
    };
    let pixels: Vec<u8> = match spec.mode {
        ColorMode::Gray => picture.into_luma8().into_raw(),
        ColorMode::Rgb => picture.into_rgb8().into_raw(),
    };
    let [low, high] = spec.range;
    let scale = |p: u8| {
        let p = if spec.invert { 255 - p } else { p };
        low as f64 + (high as f64 - low as f64) * p as f64 / 255.0
    };
    let channels = spec.mode.channels();
    let (w, h) = (w as usize, h as usize);
    let values: Vec<f64> = match spec.layout {
        ImageLayout::Flat | ImageLayout::Nhwc => pixels.iter().map(|&p| scale(p)).collect(),
        ImageLayout::Nchw => (0..channels)
            .flat_map(|c| pixels.iter().skip(c).step_by(channels).map(|&p| scale(p)).collect::<Vec<_>>())
            .collect(),
    };
    let shape = match spec.layout {
        ImageLayout::Flat => vec![h * w * channels],
        ImageLayout::Nhwc => vec![h, w, channels],
        ImageLayout::Nchw => vec![channels, h, w],
    };
    Ok((values, shape))
}

fn decode(bytes: &[u8]) -> Result<DynamicImage, String> {
    let format = image::guess_format(bytes).map_err(|_| "is not a PNG or JPEG image".to_string())?;
    if !matches!(format, ImageFormat::Png | ImageFormat::Jpeg) {
        return Err(format!("is a {format:?} image; only PNG and JPEG are accepted"));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    reader.decode().map_err(|e| format!("cannot be decoded as {format:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, RgbImage};

    fn png(picture: DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        picture.write_to(&mut Cursor::new(&mut out), ImageFormat::Png).unwrap();
        out
    }

    fn spec(mode: ColorMode, layout: ImageLayout) -> ImageSpec {
        ImageSpec { width: 2, height: 1, mode, layout, range: [0.0, 16.0], invert: false }
    }

    #[test]
    fn gray_pixels_scale_into_the_range() {
        let bytes = png(DynamicImage::ImageLuma8(GrayImage::from_raw(2, 1, vec![0, 255]).unwrap()));
        let (values, shape) = image_row(&bytes, &spec(ColorMode::Gray, ImageLayout::Flat)).unwrap();
        assert_eq!((values, shape), (vec![0.0, 16.0], vec![2]));
        let inverted = ImageSpec { invert: true, ..spec(ColorMode::Gray, ImageLayout::Flat) };
        assert_eq!(image_row(&bytes, &inverted).unwrap().0, vec![16.0, 0.0]);
    }

    #[test]
    fn rgb_channels_move_first_in_nchw() {
        let bytes = png(DynamicImage::ImageRgb8(RgbImage::from_raw(2, 1, vec![255, 0, 0, 0, 255, 0]).unwrap()));
        let (values, shape) = image_row(&bytes, &spec(ColorMode::Rgb, ImageLayout::Nchw)).unwrap();
        assert_eq!(shape, vec![3, 1, 2]);
        assert_eq!(values, vec![16.0, 0.0, 0.0, 16.0, 0.0, 0.0]);
    }

    #[test]
    fn other_bytes_are_refused_and_big_pictures_are_resized() {
        assert!(image_row(b"not an image", &spec(ColorMode::Gray, ImageLayout::Flat)).is_err());
        let big = png(DynamicImage::ImageLuma8(GrayImage::from_pixel(40, 20, image::Luma([255]))));
        let (values, _) = image_row(&big, &spec(ColorMode::Gray, ImageLayout::Flat)).unwrap();
        assert_eq!(values, vec![16.0, 16.0]);
        assert_eq!(decode_base64("data:image/png;base64,aGk=").unwrap(), b"hi");
        assert!(decode_base64("***").is_err());
    }
}
