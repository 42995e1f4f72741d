//! Conformance: the same cases against every engine this build has (`lectern_backends::ENGINES`:
//! tract always, ONNX Runtime with `--features ort`).
//!
//! Each engine is checked against references that do not come from any engine:
//! - the scikit-learn models and digits-cnn: scikit-learn's own `predict`/`predict_proba` and a
//!   numpy forward pass, on real rows of the data sets (`conformance/expected.rs`, written by
//!   `conformance/make_expected.py`);
//! - `dtypes`: `x + x` (wrapping), `not x` and identity, computed here for every V2 datatype.
//!
//! With more than one engine, every engine's outputs must also match the first's (tract's) on
//! every bundled model, on those rows and on more rows mixed from them: probabilities within
//! 1e-5, labels and every non-float output exactly. Signatures must be identical. The
//! comparison is ignored in a build without `ort`; `scripts/test.sh` runs this file with
//! `--features ort` and `ORT_DYLIB_PATH` set to the onnxruntime wheel's library, so that a
//! library that does not load fails the run.

use half::f16;
use lectern_backends::{load_backend, Backend, BackendError, Signature, ENGINES};
use lectern_core::{DataType, Tensor, TensorData};
use std::path::PathBuf;
use std::sync::Arc;

/// One batch of real rows with their reference outputs.
struct Case {
    model: &'static str,
    version: u32,
    input: &'static str,
    shape: &'static [usize],
    x: &'static [f32],
    /// `output_label`, if the model has one.
    labels: &'static [i64],
    classes: usize,
    /// `output_probability` (or `probabilities`), row-major `[rows, classes]`.
    probabilities: &'static [f32],
}

include!("conformance/expected.rs");

const TOLERANCE: f32 = 1e-5;

fn model_file(model: &str, version: u32) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../examples/models/{model}/{version}/model.onnx"))
}

fn bundled() -> Vec<(String, u32)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/models");
    let mut found = Vec::new();
    for model in std::fs::read_dir(&root).expect("examples/models exists") {
        let model = model.unwrap().path();
        for version in std::fs::read_dir(&model).unwrap() {
            let version = version.unwrap().path();
            if let Some(v) = version.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse().ok()) {
                if version.join("model.onnx").is_file() {
                    found.push((model.file_name().unwrap().to_string_lossy().into_owned(), v));
                }
            }
        }
    }
    found.sort();
    found
}

fn load(engine: &str, model: &str, version: u32) -> Arc<dyn Backend> {
    let bytes = std::fs::read(model_file(model, version)).unwrap();
    load_backend(engine, &bytes).unwrap_or_else(|e| panic!("{engine}: {model} v{version}: {e}"))
}

/// Runs one batch on a new instance; `engine` names the engine and model in messages.
fn run(engine: &str, backend: &dyn Backend, inputs: Vec<Tensor>) -> Vec<Tensor> {
    let outputs = backend.session().and_then(|mut s| s.run(inputs)).unwrap_or_else(|e| panic!("{engine}: {e}"));
    assert_eq!(outputs.len(), backend.signature().outputs.len(), "{engine}: number of outputs");
    for (out, info) in outputs.iter().zip(&backend.signature().outputs) {
        assert_eq!(out.name, info.name, "{engine}: output order");
        assert_eq!(out.datatype(), info.datatype, "{engine}: {}", info.name);
        assert_eq!(
            out.data.len(),
            out.shape.iter().product::<usize>(),
            "{engine}: {} shape {:?}",
            info.name,
            out.shape
        );
    }
    outputs
}

fn f32_input(name: &str, shape: &[usize], x: Vec<f32>) -> Vec<Tensor> {
    vec![Tensor { name: name.into(), shape: shape.to_vec(), data: TensorData::F32(x) }]
}

fn output<'a>(outputs: &'a [Tensor], name: &str) -> &'a Tensor {
    outputs.iter().find(|o| o.name == name).unwrap_or_else(|| panic!("no output {name}"))
}

fn floats(t: &Tensor) -> &[f32] {
    match &t.data {
        TensorData::F32(v) => v,
        other => panic!("{} is {:?}, not FP32", t.name, other.datatype()),
    }
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (ix, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= TOLERANCE, "{what}: element {ix}: {g} vs {w} (|diff| {})", (g - w).abs());
    }
}

/// Same names, datatypes and shapes; FP32/FP64/FP16 within the tolerance, the rest exactly.
fn assert_same_outputs(what: &str, got: &[Tensor], want: &[Tensor]) {
    assert_eq!(got.len(), want.len(), "{what}: number of outputs");
    for (g, w) in got.iter().zip(want) {
        let what = format!("{what}: {}", w.name);
        assert_eq!((&g.name, &g.shape, g.datatype()), (&w.name, &w.shape, w.datatype()), "{what}");
        match (&g.data, &w.data) {
            (TensorData::F32(a), TensorData::F32(b)) => assert_close(&what, a, b),
            (TensorData::F64(a), TensorData::F64(b)) => {
                assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() <= TOLERANCE as f64), "{what}: {a:?} vs {b:?}")
            }
            (TensorData::F16(a), TensorData::F16(b)) => {
                assert!(a.iter().zip(b).all(|(x, y)| (x.to_f32() - y.to_f32()).abs() <= 1e-3), "{what}: {a:?} vs {b:?}")
            }
            (a, b) => assert_eq!(a, b, "{what}"),
        }
    }
}

#[test]
fn the_engines_under_test() {
    eprintln!("engines: {ENGINES:?}");
    assert_eq!(ENGINES[0], "tract");
    assert_eq!(ENGINES.contains(&"ort"), cfg!(feature = "ort"));
}

#[test]
fn every_bundled_model_has_the_same_signature_on_every_engine() {
    let models = bundled();
    assert!(models.len() >= 8, "expected the bundled models, found {models:?}");
    for (model, version) in models {
        let signatures: Vec<(&str, Signature)> =
            ENGINES.iter().map(|&e| (e, load(e, &model, version).signature().clone())).collect();
        let (first, reference) = &signatures[0];
        assert!(!reference.inputs.is_empty() && !reference.outputs.is_empty(), "{model}: {reference:?}");
        for (engine, signature) in &signatures[1..] {
            assert_eq!(signature, reference, "{model} v{version}: {engine} vs {first}");
        }
    }
}

#[test]
fn a_batch_of_no_rows_answers_empty_outputs_on_every_engine() {
    for (model, version) in bundled() {
        let mut answers = Vec::new();
        for &engine in ENGINES {
            let backend = load(engine, &model, version);
            let inputs = backend
                .signature()
                .inputs
                .iter()
                .map(|i| {
                    let shape = i
                        .shape
                        .iter()
                        .enumerate()
                        .map(|(ix, &d)| if ix == 0 || d < 0 { 0 } else { d as usize })
                        .collect();
                    Tensor { name: i.name.clone(), shape, data: TensorData::empty(i.datatype) }
                })
                .collect();
            let outputs = run(&format!("{engine}: {model} v{version}, no rows"), &*backend, inputs);
            for out in &outputs {
                assert_eq!(out.shape.first(), Some(&0), "{engine}: {model} v{version}: {} {:?}", out.name, out.shape);
            }
            answers.push((engine, outputs));
        }
        for (engine, outputs) in &answers[1..] {
            assert_same_outputs(&format!("{engine} vs tract: {model} v{version}, no rows"), outputs, &answers[0].1);
        }
    }
}

#[test]
fn every_engine_matches_the_reference_outputs() {
    for case in CASES {
        let rows = case.shape[0];
        for &engine in ENGINES {
            let backend = load(engine, case.model, case.version);
            let what = format!("{engine}: {} v{}", case.model, case.version);
            let outputs = run(engine, &*backend, f32_input(case.input, case.shape, case.x.to_vec()));
            let probabilities = if case.labels.is_empty() {
                output(&outputs, "probabilities")
            } else {
                let labels = output(&outputs, "output_label");
                assert_eq!(labels.shape, vec![rows], "{what}: label shape");
                assert_eq!(labels.data, TensorData::I64(case.labels.to_vec()), "{what}: labels");
                output(&outputs, "output_probability")
            };
            assert_eq!(probabilities.shape, vec![rows, case.classes], "{what}: probability shape");
            assert_close(&what, floats(probabilities), case.probabilities);

            // One row at a time, on a second instance of the same model: the same answers.
            let row_len = case.x.len() / rows;
            let mut session = backend.session().unwrap();
            for r in 0..rows {
                let mut shape = case.shape.to_vec();
                shape[0] = 1;
                let one = session
                    .run(f32_input(case.input, &shape, case.x[r * row_len..(r + 1) * row_len].to_vec()))
                    .unwrap_or_else(|e| panic!("{what}: row {r}: {e}"));
                let name = if case.labels.is_empty() { "probabilities" } else { "output_probability" };
                let want = &case.probabilities[r * case.classes..(r + 1) * case.classes];
                assert_close(&format!("{what}: row {r} alone"), floats(output(&one, name)), want);
            }
        }
    }
}

/// More rows for the cross-engine comparison: each pair of reference rows mixed 3:1.
fn mixed_rows(case: &Case) -> (Vec<usize>, Vec<f32>) {
    let rows = case.shape[0];
    let len = case.x.len() / rows;
    let mut x = case.x.to_vec();
    for a in 0..rows {
        for b in 0..rows {
            if a != b {
                x.extend((0..len).map(|i| 0.75 * case.x[a * len + i] + 0.25 * case.x[b * len + i]));
            }
        }
    }
    let mut shape = case.shape.to_vec();
    shape[0] = x.len() / len;
    (shape, x)
}

/// Needs a second engine: ignored (and shown as such) in a build without `ort`, never a silent
/// pass; scripts/test.sh runs it with `--features ort`.
#[test]
#[cfg_attr(not(feature = "ort"), ignore = "compares engines: build with --features ort")]
fn every_engine_agrees_with_tract_on_many_rows() {
    assert!(ENGINES.len() >= 2, "only {ENGINES:?} in this build: nothing to compare tract with");
    for case in CASES {
        let (shape, x) = mixed_rows(case);
        let tract = run("tract", &*load("tract", case.model, case.version), f32_input(case.input, &shape, x.clone()));
        for &engine in &ENGINES[1..] {
            let got = run(engine, &*load(engine, case.model, case.version), f32_input(case.input, &shape, x.clone()));
            assert_same_outputs(
                &format!("{engine} vs tract: {} v{} ({} rows)", case.model, case.version, shape[0]),
                &got,
                &tract,
            );
        }
    }
}

/// One input per datatype, with values that wrap around when doubled.
fn dtypes_inputs(signature: &Signature) -> Vec<Tensor> {
    let rows = 2;
    signature
        .inputs
        .iter()
        .map(|info| {
            let data = match info.datatype {
                DataType::Bool => TensorData::Bool(vec![true, false, true, false, false, true]),
                DataType::U8 => TensorData::U8(vec![0, 1, 127, 128, 200, u8::MAX]),
                DataType::U16 => TensorData::U16(vec![0, 1, 300, 32768, 40000, u16::MAX]),
                DataType::U32 => TensorData::U32(vec![0, 1, 70000, 1 << 31, 3_000_000_000, u32::MAX]),
                DataType::U64 => TensorData::U64(vec![0, 1, 1 << 40, 1 << 63, u64::MAX - 1, u64::MAX]),
                DataType::I8 => TensorData::I8(vec![0, -1, 100, -100, i8::MIN, i8::MAX]),
                DataType::I16 => TensorData::I16(vec![0, -1, 20000, -20000, i16::MIN, i16::MAX]),
                DataType::I32 => TensorData::I32(vec![0, -1, 2_000_000_000, -2_000_000_000, i32::MIN, i32::MAX]),
                DataType::I64 => TensorData::I64(vec![0, -1, 1 << 62, -(1 << 62), i64::MIN, i64::MAX]),
                DataType::F16 => TensorData::F16([0.0, -1.5, 0.25, 1000.0, -0.125, 3.0].map(f16::from_f32).to_vec()),
                DataType::F32 => TensorData::F32(vec![0.0, -1.5, 0.1, 1e30, -3.25, 7.0]),
                DataType::F64 => TensorData::F64(vec![0.0, -1.5, 0.1, 1e300, -3.25, 7.0]),
                DataType::Bytes => TensorData::Bytes(
                    ["", "a", "hello", "é ✓ 😀", "two words", "x".repeat(300).as_str()]
                        .map(|s| s.as_bytes().to_vec())
                        .to_vec(),
                ),
            };
            Tensor { name: info.name.clone(), shape: vec![rows, 3], data }
        })
        .collect()
}

/// What the dtypes model must answer: numbers doubled (wrapping), BOOL negated, BYTES as is.
fn dtypes_expected(inputs: &[Tensor]) -> Vec<Tensor> {
    inputs
        .iter()
        .map(|t| {
            let data = match &t.data {
                TensorData::Bool(v) => TensorData::Bool(v.iter().map(|x| !x).collect()),
                TensorData::U8(v) => TensorData::U8(v.iter().map(|x| x.wrapping_add(*x)).collect()),
                TensorData::U16(v) => TensorData::U16(v.iter().map(|x| x.wrapping_add(*x)).collect()),
                TensorData::U32(v) => TensorData::U32(v.iter().map(|x| x.wrapping_add(*x)).collect()),
                TensorData::U64(v) => TensorData::U64(v.iter().map(|x| x.wrapping_add(*x)).collect()),
                TensorData::I8(v) => TensorData::I8(v.iter().map(|x| x.wrapping_add(*x)).collect()),
                TensorData::I16(v) => TensorData::I16(v.iter().map(|x| x.wrapping_add(*x)).collect()),
                TensorData::I32(v) => TensorData::I32(v.iter().map(|x| x.wrapping_add(*x)).collect()),
                TensorData::I64(v) => TensorData::I64(v.iter().map(|x| x.wrapping_add(*x)).collect()),
                TensorData::F16(v) => TensorData::F16(v.iter().map(|x| f16::from_f32(x.to_f32() * 2.0)).collect()),
                TensorData::F32(v) => TensorData::F32(v.iter().map(|x| x + x).collect()),
                TensorData::F64(v) => TensorData::F64(v.iter().map(|x| x + x).collect()),
                TensorData::Bytes(v) => TensorData::Bytes(v.clone()),
            };
            Tensor { name: t.name.replacen("in_", "out_", 1), shape: t.shape.clone(), data }
        })
        .collect()
}

#[test]
fn every_engine_carries_every_datatype_both_ways() {
    for &engine in ENGINES {
        let backend = load(engine, "dtypes", 1);
        let signature = backend.signature();
        let mut datatypes: Vec<DataType> = signature.inputs.iter().map(|i| i.datatype).collect();
        datatypes.sort_by_key(|d| d.as_str());
        let mut all = DataType::ALL.to_vec();
        all.sort_by_key(|d| d.as_str());
        assert_eq!(datatypes, all, "{engine}: one input per datatype");
        for (i, o) in signature.inputs.iter().zip(&signature.outputs) {
            assert_eq!((i.datatype, &i.shape), (o.datatype, &o.shape), "{engine}: {} / {}", i.name, o.name);
            assert_eq!(i.shape, vec![-1, 3], "{engine}: {}", i.name);
        }
        let inputs = dtypes_inputs(signature);
        let want = dtypes_expected(&inputs);
        let got = run(engine, &*backend, inputs);
        // Exact: doubling is exact in every floating type for these values.
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "{engine}: {}", w.name);
        }
    }
}

#[test]
fn every_engine_refuses_bytes_that_are_not_text() {
    for &engine in ENGINES {
        let backend = load(engine, "dtypes", 1);
        let mut inputs = dtypes_inputs(backend.signature());
        let bytes = inputs.iter_mut().find(|t| t.datatype() == DataType::Bytes).unwrap();
        bytes.data = TensorData::Bytes(vec![vec![0xff, 0xfe]; 6]);
        let name = bytes.name.clone();
        match backend.session().unwrap().run(inputs) {
            Err(BackendError::BadInput { input, .. }) => assert_eq!(input, name, "{engine}"),
            other => panic!("{engine}: expected BadInput for '{name}', got {other:?}"),
        }
    }
}

#[test]
fn an_engine_that_is_not_built_in_or_unknown_is_an_error_naming_it() {
    let bytes = std::fs::read(model_file("iris-logreg", 1)).unwrap();
    let unknown = load_backend("onnx-gpu", &bytes).err().expect("unknown engine");
    assert!(unknown.to_string().contains("onnx-gpu"), "{unknown}");
    if !ENGINES.contains(&"ort") {
        let missing = load_backend("ort", &bytes).err().expect("ort is not built in");
        assert!(missing.to_string().contains("feature `ort`"), "{missing}");
    }
}
