//! OCR models on Tesseract (lectern-ocr): a PNG or JPEG per row of the BYTES input `image`;
//! per row, the page's text (`text`) and its lines with each word's box and confidence as JSON
//! (`page`). The model's file is its version folder's `model.toml` ([`OcrSettings`]).

use crate::{Backend, BackendError, Session, Signature, TensorInfo};
use lectern_core::{DataType, Tensor, TensorData};
use lectern_ocr::{OcrError, OcrSettings, Reader};

/// The input holding one image per row.
pub const IMAGE_INPUT: &str = "image";
/// The output holding each page's text.
pub const TEXT_OUTPUT: &str = "text";
/// The output holding each page's lines and words, as JSON.
pub const PAGE_OUTPUT: &str = "page";
/// The platform model metadata names.
pub const PLATFORM: &str = "tesseract";

pub struct OcrBackend {
    settings: OcrSettings,
    signature: Signature,
}

impl OcrBackend {
    /// From a version's `model.toml`: checks the settings, that this build reads images and
    /// that the language data is installed (the errors name what to install).
    pub fn from_bytes(bytes: &[u8]) -> Result<OcrBackend, BackendError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| BackendError::Load("an OCR model's model.toml is not UTF-8 text".into()))?;
        let settings = OcrSettings::parse(text).map_err(|e| BackendError::Load(e.to_string()))?;
        if !lectern_ocr::AVAILABLE {
            return Err(BackendError::Missing(lectern_ocr::NOT_BUILT.into()));
        }
        settings.check_languages().map_err(|e| BackendError::Missing(e.to_string()))?;
        let bytes_info = |name: &str| TensorInfo { name: name.into(), datatype: DataType::Bytes, shape: vec![-1] };
        let signature = Signature {
            inputs: vec![bytes_info(IMAGE_INPUT)],
            outputs: vec![bytes_info(TEXT_OUTPUT), bytes_info(PAGE_OUTPUT)],
        };
        Ok(OcrBackend { settings, signature })
    }
}

/// What [`OcrBackend::from_bytes`] checks of the build and the machine: a settings file that
/// does not parse is left to the load.
pub fn check_available(bytes: &[u8]) -> Result<(), BackendError> {
    match OcrBackend::from_bytes(bytes) {
        Err(e @ BackendError::Missing(_)) => Err(e),
        _ => Ok(()),
    }
}

impl Backend for OcrBackend {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn session(&self) -> Result<Box<dyn Session>, BackendError> {
        let reader = Reader::new(&self.settings).map_err(|e| BackendError::Load(e.to_string()))?;
        Ok(Box::new(OcrSession { reader }))
    }

    fn platform(&self) -> &'static str {
        PLATFORM
    }

    /// Each image is a PNG or JPEG within the size limit (read from its header only), and the
    /// request's images together hold at most `max_pixels`.
    fn check(&self, inputs: &[Tensor]) -> Result<(), BackendError> {
        let mut total = 0u64;
        for (row, bytes) in images(inputs)?.iter().enumerate() {
            let (w, h) = lectern_ocr::check_image(bytes, self.settings.max_pixels).map_err(|e| bad_row(row, &e))?;
            total += u64::from(w) * u64::from(h);
        }
        if total > self.settings.max_pixels {
            return Err(BackendError::BadInput {
                input: IMAGE_INPUT.into(),
                message: format!(
                    "the request's images hold {total} pixels together, more than the {} this model reads in one request",
                    self.settings.max_pixels
                ),
            });
        }
        Ok(())
    }

    fn default_max_batch_size(&self) -> Option<usize> {
        Some(0)
    }
}

fn images(inputs: &[Tensor]) -> Result<&[Vec<u8>], BackendError> {
    match inputs.first() {
        Some(Tensor { data: TensorData::Bytes(rows), .. }) => Ok(rows),
        _ => Err(BackendError::BadInput { input: IMAGE_INPUT.into(), message: "must be BYTES".into() }),
    }
}

fn bad_row(row: usize, error: &OcrError) -> BackendError {
    BackendError::BadInput { input: IMAGE_INPUT.into(), message: format!("row {row} {error}") }
}

struct OcrSession {
    reader: Reader,
}

impl Session for OcrSession {
    fn run(&mut self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, BackendError> {
        let rows = images(&inputs)?;
        let mut texts = Vec::with_capacity(rows.len());
        let mut pages = Vec::with_capacity(rows.len());
        for (row, bytes) in rows.iter().enumerate() {
            let page = self.reader.read(bytes).map_err(|e| match e {
                OcrError::BadImage(_) => bad_row(row, &e),
                other => BackendError::Inference(other.to_string()),
            })?;
            pages.push(serde_json::to_vec(&page).map_err(|e| BackendError::Inference(e.to_string()))?);
            texts.push(page.text.into_bytes());
        }
        let n = rows.len();
        Ok(vec![
            Tensor { name: TEXT_OUTPUT.into(), shape: vec![n], data: TensorData::Bytes(texts) },
            Tensor { name: PAGE_OUTPUT.into(), shape: vec![n], data: TensorData::Bytes(pages) },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_the_build_are_checked_at_load() {
        assert!(OcrBackend::from_bytes(b"languages = []").is_err());
        let loaded = OcrBackend::from_bytes(b"languages = [\"fra\"]");
        if cfg!(feature = "ocr") {
            let backend = loaded.expect("tesseract-ocr-fra is installed where the ocr feature is built");
            assert_eq!(backend.signature().inputs[0].name, IMAGE_INPUT);
            let bad =
                vec![Tensor { name: "image".into(), shape: vec![1], data: TensorData::Bytes(vec![b"x".to_vec()]) }];
            assert!(backend.check(&bad).unwrap_err().to_string().contains("row 0 is not a PNG or JPEG"));
            assert_eq!(backend.default_max_batch_size(), Some(0));
            // each image fits, together they do not
            let small = OcrBackend::from_bytes(b"languages = [\"fra\"]\nmax_pixels = 100").unwrap();
            let mut png = Vec::new();
            image::DynamicImage::new_luma8(10, 10)
                .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .unwrap();
            let rows = |n: usize| {
                vec![Tensor { name: "image".into(), shape: vec![n], data: TensorData::Bytes(vec![png.clone(); n]) }]
            };
            assert!(small.check(&rows(1)).is_ok());
            assert!(small.check(&rows(2)).unwrap_err().to_string().contains("together"));
        } else {
            let message = loaded.err().expect("no OCR in this build").to_string();
            assert!(message.contains("cargo feature `ocr`"), "{message}");
        }
    }
}
