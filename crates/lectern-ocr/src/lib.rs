//! Words from a photo: a PNG or JPEG in, the words on it out, line by line, each with its box
//! and Tesseract's confidence.
//!
//! Reading needs the cargo feature `tesseract` (Debian's libtesseract through the `tesseract`
//! crate); without it [`Reader::new`] refuses with a message naming what to build and install.
//! Settings, the checks of the language data and of an image's size, and the parsing of
//! Tesseract's output are plain Rust and always built.

mod page;
mod settings;

pub use page::{Line, Page, Word};
pub use settings::{check_image, tessdata_dir, OcrSettings, DEFAULT_MAX_PIXELS, MAX_SIDE, PAGE_SEG_MODES};

#[cfg(feature = "tesseract")]
mod reader;
#[cfg(feature = "tesseract")]
pub use reader::Reader;

/// Why OCR could not be set up or could not read an image.
#[derive(Debug, thiserror::Error)]
pub enum OcrError {
    /// The settings are wrong (unknown page-segmentation mode, no language, ...).
    #[error("{0}")]
    Settings(String),
    /// Something this build or this machine lacks; the message names what to install.
    #[error("{0}")]
    Missing(String),
    /// The image is not one Lectern reads, or too large.
    #[error("{0}")]
    BadImage(String),
    /// Tesseract failed on a valid image.
    #[error("OCR failed: {0}")]
    Failed(String),
}

/// True when this build can read images (the cargo feature `tesseract`).
pub const AVAILABLE: bool = cfg!(feature = "tesseract");

/// What a build without the feature says when asked to read.
pub const NOT_BUILT: &str = "OCR is not in this build: build Lectern with the cargo feature `ocr` \
    (`cargo build --release --features lectern-backends/ocr`), which needs Debian's packages \
    tesseract-ocr, libtesseract-dev, libleptonica-dev and libclang-dev, and the language data \
    (tesseract-ocr-fra for French)";

#[cfg(not(feature = "tesseract"))]
/// Stands in for the reader in builds without OCR: it cannot be made.
pub struct Reader(());

#[cfg(not(feature = "tesseract"))]
impl Reader {
    pub fn new(_settings: &OcrSettings) -> Result<Reader, OcrError> {
        Err(OcrError::Missing(NOT_BUILT.into()))
    }

    pub fn read(&mut self, _image: &[u8]) -> Result<Page, OcrError> {
        Err(OcrError::Missing(NOT_BUILT.into()))
    }
}
