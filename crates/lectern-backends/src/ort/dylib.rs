//! Finding the ONNX Runtime shared library, which is loaded at run time (`ort`'s
//! `load-dynamic`): nothing is downloaded or linked at build time.
//!
//! In order:
//! 1. `$ORT_DYLIB_PATH`, when set (it must then name an existing file);
//! 2. the `onnxruntime` Python wheel (`onnxruntime/capi/libonnxruntime.so.*`) in the virtual
//!    environments Lectern knows: `$VIRTUAL_ENV`, a `.venv` in the current directory or one of
//!    its parents, `.venv` of the source tree this crate was built from, and the benchmark
//!    venv (`$LECTERN_BENCH_VENV`, default `~/.cache/lectern/bench-venv`);
//! 3. the wheel of whichever `python3` is on the `PATH`, if it has one.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable that names the library (the one `ort` itself reads).
pub const ENV: &str = "ORT_DYLIB_PATH";

fn is_library(name: &str) -> bool {
    if cfg!(target_os = "windows") {
        name.eq_ignore_ascii_case("onnxruntime.dll")
    } else if cfg!(target_os = "macos") {
        name.starts_with("libonnxruntime.") && name.ends_with(".dylib")
    } else {
        // libonnxruntime.so or libonnxruntime.so.1.32.0, not libonnxruntime_providers_shared.so
        name == "libonnxruntime.so" || name.starts_with("libonnxruntime.so.")
    }
}

/// The library inside an installed `onnxruntime` package folder.
fn in_package(package: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(package.join("capi"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(is_library))
        .map(|e| e.path())
        .collect();
    // The longest name is the versioned file (libonnxruntime.so.1.32.0) rather than a link.
    found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    found.into_iter().next()
}

/// The library in a virtual environment (or any Python prefix).
fn in_venv(venv: &Path) -> Option<PathBuf> {
    let mut site_packages = vec![venv.join("Lib").join("site-packages")];
    for lib in ["lib", "lib64"] {
        if let Ok(entries) = std::fs::read_dir(venv.join(lib)) {
            let mut pythons: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("python3")))
                .map(|e| e.path().join("site-packages"))
                .collect();
            pythons.sort();
            site_packages.extend(pythons.into_iter().rev());
        }
    }
    site_packages.iter().find_map(|sp| in_package(&sp.join("onnxruntime")))
}

fn venvs() -> Vec<PathBuf> {
    let mut venvs = Vec::new();
    if let Some(v) = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        venvs.push(PathBuf::from(v));
    }
    if let Ok(cwd) = std::env::current_dir() {
        venvs.extend(cwd.ancestors().map(|d| d.join(".venv")));
    }
    // The workspace this crate was compiled in (crates/lectern-backends/../../.venv).
    venvs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv"));
    match std::env::var_os("LECTERN_BENCH_VENV").filter(|v| !v.is_empty()) {
        Some(v) => venvs.push(PathBuf::from(v)),
        None => {
            if let Some(home) = std::env::var_os("HOME") {
                venvs.push(Path::new(&home).join(".cache/lectern/bench-venv"));
            }
        }
    }
    venvs
}

fn from_python() -> Option<PathBuf> {
    let script =
        "import importlib.util as u, os; s = u.find_spec('onnxruntime'); print(os.path.dirname(s.origin) if s else '')";
    let output = Command::new("python3").args(["-c", script]).output().ok()?;
    let folder = String::from_utf8(output.stdout).ok()?;
    let folder = folder.trim();
    (output.status.success() && !folder.is_empty()).then(|| in_package(Path::new(folder))).flatten()
}

/// The path of the ONNX Runtime library to load, or why there is none.
pub fn locate() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{ENV} is {}, which is not a file", path.display()))
        };
    }
    let venvs = venvs();
    if let Some(found) = venvs.iter().find_map(|v| in_venv(v)) {
        return Ok(found);
    }
    from_python().ok_or_else(|| {
        format!(
            "no ONNX Runtime library found: set {ENV} to libonnxruntime's path, or install the `onnxruntime` \
             Python wheel (pip install onnxruntime) in a virtual environment (looked in $VIRTUAL_ENV, ./.venv and \
             its parents, the bench venv, and python3's packages)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_runtime_library_matches() {
        if cfg!(target_os = "linux") {
            assert!(is_library("libonnxruntime.so.1.32.0"));
            assert!(is_library("libonnxruntime.so"));
            assert!(!is_library("libonnxruntime_providers_shared.so"));
            assert!(!is_library("onnxruntime_pybind11_state.cpython-311-x86_64-linux-gnu.so"));
        }
    }
}
