//! An OCR model's settings (its version folder's `model.toml`), the check that the language
//! data is installed, and the check of an image before it is decoded.

use crate::OcrError;
use image::{ImageFormat, ImageReader};
use serde::Deserialize;
use std::io::Cursor;
use std::path::PathBuf;

/// Largest image read unless the settings say otherwise: 40 megapixels (a phone photo is 12).
pub const DEFAULT_MAX_PIXELS: u64 = 40_000_000;
/// Longest side of an image Tesseract reads.
pub const MAX_SIDE: u32 = 32_767;
/// Page-segmentation modes that recognise text (0 and 2 only analyse the layout).
pub const PAGE_SEG_MODES: [u32; 12] = [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
/// Where Debian's packages put the language data.
const DEBIAN_TESSDATA: [&str; 2] = ["/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata"];

/// What an OCR model reads and how.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcrSettings {
    /// Tesseract languages, tried together (`["fra"]`, `["fra", "eng"]`).
    pub languages: Vec<String>,
    /// Tesseract's page-segmentation mode (3: a whole page, automatic; 6: one block; 7: one line).
    #[serde(default = "default_psm")]
    pub psm: u32,
    /// The resolution the image is taken to have, in dots per inch.
    #[serde(default = "default_dpi")]
    pub dpi: u32,
    /// Images with more pixels are refused before they are decoded.
    #[serde(default = "default_max_pixels")]
    pub max_pixels: u64,
}

fn default_psm() -> u32 {
    3
}

fn default_dpi() -> u32 {
    300
}

fn default_max_pixels() -> u64 {
    DEFAULT_MAX_PIXELS
}

impl OcrSettings {
    /// Parses and checks a model's `model.toml`.
    pub fn parse(text: &str) -> Result<OcrSettings, OcrError> {
        let settings: OcrSettings =
            toml::from_str(text).map_err(|e| OcrError::Settings(format!("OCR settings: {}", e.message())))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), OcrError> {
        if self.languages.is_empty() {
            return Err(OcrError::Settings("OCR settings: `languages` names no language (e.g. [\"fra\"])".into()));
        }
        for lang in &self.languages {
            let plain = !lang.is_empty() && lang.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !plain {
                return Err(OcrError::Settings(format!("OCR settings: '{lang}' is not a Tesseract language name")));
            }
        }
        if !PAGE_SEG_MODES.contains(&self.psm) {
            return Err(OcrError::Settings(format!(
                "OCR settings: psm {} is not a page-segmentation mode that reads text (one of {:?})",
                self.psm, PAGE_SEG_MODES
            )));
        }
        if !(70..=2400).contains(&self.dpi) {
            return Err(OcrError::Settings(format!("OCR settings: dpi must be between 70 and 2400, not {}", self.dpi)));
        }
        if !(1..=200_000_000).contains(&self.max_pixels) {
            return Err(OcrError::Settings("OCR settings: max_pixels must be between 1 and 200000000".into()));
        }
        Ok(())
    }

    /// The languages as Tesseract takes them (`fra+eng`).
    pub fn language_string(&self) -> String {
        self.languages.join("+")
    }

    /// Checks that every language's data file is installed; the error names the package.
    pub fn check_languages(&self) -> Result<PathBuf, OcrError> {
        let dir = tessdata_dir().ok_or_else(|| {
            OcrError::Missing(format!(
                "no Tesseract language data folder (looked in $TESSDATA_PREFIX and {}): install Debian's \
                 packages {}",
                DEBIAN_TESSDATA.join(", "),
                self.packages()
            ))
        })?;
        let missing: Vec<&str> = self
            .languages
            .iter()
            .filter(|l| !dir.join(format!("{l}.traineddata")).is_file())
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(OcrError::Missing(format!(
                "Tesseract has no data for {} in {}: install Debian's packages {}",
                missing.join(", "),
                dir.display(),
                self.packages()
            )));
        }
        Ok(dir)
    }

    fn packages(&self) -> String {
        let mut names = vec!["tesseract-ocr".to_string()];
        names.extend(self.languages.iter().map(|l| format!("tesseract-ocr-{}", l.replace('_', "-").to_lowercase())));
        names.join(" ")
    }
}

/// The folder of Tesseract's language data: `$TESSDATA_PREFIX` (or its `tessdata/`), else
/// Debian's.
pub fn tessdata_dir() -> Option<PathBuf> {
    if let Some(prefix) = std::env::var_os("TESSDATA_PREFIX").filter(|p| !p.is_empty()) {
        let prefix = PathBuf::from(prefix);
        let nested = prefix.join("tessdata");
        return Some(if nested.is_dir() { nested } else { prefix });
    }
    DEBIAN_TESSDATA.iter().map(PathBuf::from).find(|p| p.is_dir())
}

/// Checks that `bytes` are a PNG or JPEG of at most `max_pixels`, from its header only (nothing
/// is decoded); gives its width and height.
pub fn check_image(bytes: &[u8], max_pixels: u64) -> Result<(u32, u32), OcrError> {
    let format = image::guess_format(bytes).ok();
    if !matches!(format, Some(ImageFormat::Png | ImageFormat::Jpeg)) {
        return Err(OcrError::BadImage("is not a PNG or JPEG image".into()));
    }
    let reader = ImageReader::with_format(Cursor::new(bytes), format.unwrap_or(ImageFormat::Png));
    let (width, height) =
        reader.into_dimensions().map_err(|e| OcrError::BadImage(format!("is not a readable image: {e}")))?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(OcrError::BadImage(format!(
            "is {width}x{height} pixels ({:.1} megapixels), more than the {:.1} megapixels this model reads",
            pixels as f64 / 1e6,
            max_pixels as f64 / 1e6
        )));
    }
    if pixels == 0 {
        return Err(OcrError::BadImage("has no pixels".into()));
    }
    if width.max(height) > MAX_SIDE {
        return Err(OcrError::BadImage(format!(
            "is {width}x{height} pixels; a side longer than {MAX_SIDE} pixels is not read"
        )));
    }
    Ok((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let ok = OcrSettings::parse("languages = [\"fra\"]\n").expect("defaults");
        assert_eq!((ok.psm, ok.dpi, ok.max_pixels), (3, 300, DEFAULT_MAX_PIXELS));
        assert_eq!(OcrSettings::parse("languages = [\"fra\", \"eng\"]").unwrap().language_string(), "fra+eng");
        for bad in [
            "languages = []",
            "languages = [\"../etc\"]",
            "languages = [\"fra\"]\npsm = 0",
            "languages = [\"fra\"]\npsm = 14",
            "languages = [\"fra\"]\ndpi = 5",
            "languages = [\"fra\"]\ncolour = 1",
        ] {
            assert!(OcrSettings::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_language_names_its_package() {
        let settings = OcrSettings::parse("languages = [\"zzz_x\"]").unwrap();
        let message = settings.check_languages().unwrap_err().to_string();
        assert!(message.contains("tesseract-ocr-zzz-x"), "{message}");
    }

    #[test]
    fn images_are_checked_by_their_header() {
        assert!(check_image(b"hello", 100).unwrap_err().to_string().contains("PNG or JPEG"));
        let mut png = Vec::new();
        image::DynamicImage::new_luma8(20, 10).write_to(&mut Cursor::new(&mut png), ImageFormat::Png).expect("encode");
        assert_eq!(check_image(&png, 200).unwrap(), (20, 10));
        assert!(check_image(&png, 199).unwrap_err().to_string().contains("megapixels"));
        assert!(check_image(&png[..30], 200).is_err());
        let mut wide = Vec::new();
        image::DynamicImage::new_luma8(MAX_SIDE + 1, 1)
            .write_to(&mut Cursor::new(&mut wide), ImageFormat::Png)
            .expect("encode");
        assert!(check_image(&wide, 1 << 30).unwrap_err().to_string().contains("side longer"));
    }
}
