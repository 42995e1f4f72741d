//! Reading pages with Tesseract (Debian's libtesseract through the `tesseract` crate).

use crate::{check_image, OcrError, OcrSettings, Page};
use image::ImageReader;
use std::io::Cursor;
use tesseract::{PageSegMode, Tesseract};

/// Most memory the decoder may take for one image.
const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;

/// One Tesseract engine with its settings; not shared between threads (make one per thread).
/// Initialising costs about 100 ms, so a reader is kept and used for many images.
pub struct Reader {
    settings: OcrSettings,
    tessdata: String,
    engine: Option<Tesseract>,
}

impl Reader {
    /// Checks that the language data is installed, then starts an engine.
    pub fn new(settings: &OcrSettings) -> Result<Reader, OcrError> {
        let tessdata = settings.check_languages()?.to_string_lossy().into_owned();
        let mut reader = Reader { settings: settings.clone(), tessdata, engine: None };
        reader.engine = Some(reader.start()?);
        Ok(reader)
    }

    fn start(&self) -> Result<Tesseract, OcrError> {
        let engine = Tesseract::new(Some(&self.tessdata), Some(&self.settings.language_string()))
            .map_err(|e| OcrError::Failed(format!("cannot start Tesseract: {e}")))?;
        // Tesseract says "Estimating resolution as ..." on stderr unless it is told.
        engine
            .set_variable("user_defined_dpi", &self.settings.dpi.to_string())
            .and_then(|t| t.set_variable("debug_file", "/dev/null"))
            .map_err(|e| OcrError::Failed(format!("cannot set up Tesseract: {e}")))
    }

    /// Reads the words of a PNG or JPEG. An image with no text gives an empty page.
    pub fn read(&mut self, image: &[u8]) -> Result<Page, OcrError> {
        let (width, height) = check_image(image, self.settings.max_pixels)?;
        let gray = decode_gray(image)?;
        one_openmp_thread();
        let engine = match self.engine.take() {
            Some(engine) => engine,
            None => self.start()?,
        };
        // On an error the engine is dropped; the next image starts a new one.
        let failed = |e: &dyn std::fmt::Display| OcrError::Failed(e.to_string());
        let mut engine = engine
            .set_frame(&gray, width as i32, height as i32, 1, width as i32)
            .map_err(|e| failed(&e))?
            .set_source_resolution(self.settings.dpi as i32);
        engine.set_page_seg_mode(page_seg_mode(self.settings.psm));
        let mut engine = engine.recognize().map_err(|e| failed(&e))?;
        let tsv = engine.get_tsv_text(0).map_err(|e| failed(&e))?;
        self.engine = Some(engine);
        Ok(Page::from_tsv(&tsv))
    }
}

/// The image as 8-bit gray pixels, row by row (Tesseract binarises it anyway).
fn decode_gray(bytes: &[u8]) -> Result<Vec<u8>, OcrError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| OcrError::BadImage(format!("is not a readable image: {e}")))?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let picture = reader.decode().map_err(|e| OcrError::BadImage(format!("is not a readable image: {e}")))?;
    if !picture.color().has_alpha() {
        return Ok(picture.into_luma8().into_raw());
    }
    // Transparent pixels are paper: laid over white (a screenshot's clear background would
    // otherwise read as black).
    let mut rgba = picture.into_rgba8();
    for pixel in rgba.pixels_mut() {
        let alpha = u16::from(pixel[3]);
        for channel in &mut pixel.0[..3] {
            *channel = ((u16::from(*channel) * alpha + 255 * (255 - alpha)) / 255) as u8;
        }
        pixel[3] = 255;
    }
    Ok(image::DynamicImage::ImageRgba8(rgba).into_luma8().into_raw())
}

/// Keeps OpenMP (which Debian's libtesseract uses) on the calling thread: Lectern runs one
/// reader per instance thread, and OpenMP's own threads on top of those made OCR several times
/// slower on a busy 2-core machine. With at most 0 active parallel levels every parallel region
/// runs on the thread that meets it, whatever `num_threads` Tesseract asks for (the process has
/// no other OpenMP user); the same as OMP_THREAD_LIMIT=1, which libgomp reads only at start-up.
fn one_openmp_thread() {
    type SetInt = unsafe extern "C" fn(libc::c_int);
    for (name, value) in [(c"omp_set_max_active_levels", 0), (c"omp_set_num_threads", 1)] {
        // SAFETY: dlsym with a NUL-terminated name; both symbols, when libgomp is loaded (it is
        // libtesseract's dependency), are `void f(int)`.
        unsafe {
            let symbol = libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr());
            if !symbol.is_null() {
                let set: SetInt = std::mem::transmute::<*mut libc::c_void, SetInt>(symbol);
                set(value);
            }
        }
    }
}

fn page_seg_mode(psm: u32) -> PageSegMode {
    match psm {
        1 => PageSegMode::PsmAutoOsd,
        4 => PageSegMode::PsmSingleColumn,
        5 => PageSegMode::PsmSingleBlockVertText,
        6 => PageSegMode::PsmSingleBlock,
        7 => PageSegMode::PsmSingleLine,
        8 => PageSegMode::PsmSingleWord,
        9 => PageSegMode::PsmCircleWord,
        10 => PageSegMode::PsmSingleChar,
        11 => PageSegMode::PsmSparseText,
        12 => PageSegMode::PsmSparseTextOsd,
        13 => PageSegMode::PsmRawLine,
        _ => PageSegMode::PsmAuto,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, ImageFormat};

    fn png(picture: DynamicImage) -> Vec<u8> {
        let mut bytes = Vec::new();
        picture.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).expect("encode");
        bytes
    }

    #[test]
    fn transparent_pixels_are_white_paper() {
        let clear = png(DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(4, 2, image::Rgba([0, 0, 0, 0]))));
        assert_eq!(decode_gray(&clear).unwrap(), vec![255; 8]);
        let ink = png(DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(4, 2, image::Rgba([0, 0, 0, 255]))));
        assert_eq!(decode_gray(&ink).unwrap(), vec![0; 8]);
    }

    #[test]
    fn a_blank_page_has_no_words_and_bad_images_are_refused() {
        let settings = OcrSettings::parse("languages = [\"fra\"]").unwrap();
        let mut reader = Reader::new(&settings).expect("Tesseract with French data (tesseract-ocr-fra)");
        let blank = png(DynamicImage::ImageLuma8(image::GrayImage::from_pixel(300, 100, image::Luma([255]))));
        assert_eq!(reader.read(&blank).expect("blank page"), Page::default());
        assert!(matches!(reader.read(b"not an image"), Err(OcrError::BadImage(_))));
        assert!(matches!(reader.read(&blank[..40]), Err(OcrError::BadImage(_))));
        // the reader still works after refusing
        assert_eq!(reader.read(&blank).expect("blank page again"), Page::default());
    }
}
