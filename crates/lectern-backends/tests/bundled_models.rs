//! Every bundled example model loads on tract and runs on a batch of two rows.
//! (Values are checked against onnxruntime by tests/python/test_reference.py.)

use lectern_backends::onnx::OnnxBackend;
use lectern_backends::Backend;
use lectern_core::{DataType, Tensor, TensorData};
use std::path::PathBuf;

fn bundled() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/models");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("examples/models exists")
        .flat_map(|m| std::fs::read_dir(m.unwrap().path()).unwrap())
        .map(|v| v.unwrap().path().join("model.onnx"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn zeros(datatype: DataType, n: usize) -> TensorData {
    match datatype {
        DataType::Bool => TensorData::Bool(vec![false; n]),
        DataType::U8 => TensorData::U8(vec![1; n]),
        DataType::U16 => TensorData::U16(vec![1; n]),
        DataType::U32 => TensorData::U32(vec![1; n]),
        DataType::U64 => TensorData::U64(vec![1; n]),
        DataType::I8 => TensorData::I8(vec![1; n]),
        DataType::I16 => TensorData::I16(vec![1; n]),
        DataType::I32 => TensorData::I32(vec![1; n]),
        DataType::I64 => TensorData::I64(vec![1; n]),
        DataType::F16 => TensorData::F16(vec![half::f16::ONE; n]),
        DataType::F32 => TensorData::F32(vec![0.5; n]),
        DataType::F64 => TensorData::F64(vec![0.5; n]),
        DataType::Bytes => TensorData::Bytes(vec![b"ab".to_vec(); n]),
    }
}

#[test]
fn every_bundled_model_loads_and_runs_a_batch_of_two() {
    let files = bundled();
    assert!(files.len() >= 7, "expected the bundled models, found {files:?}");
    for file in files {
        let backend = OnnxBackend::from_bytes(&std::fs::read(&file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let sig = backend.signature().clone();
        let inputs = sig
            .inputs
            .iter()
            .map(|i| {
                let shape: Vec<usize> = i.shape.iter().map(|&d| if d < 0 { 2 } else { d as usize }).collect();
                let n = shape.iter().product();
                Tensor { name: i.name.clone(), shape, data: zeros(i.datatype, n) }
            })
            .collect();
        let outputs = backend.session().unwrap().run(inputs).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(outputs.len(), sig.outputs.len());
        for (out, info) in outputs.iter().zip(&sig.outputs) {
            assert_eq!(out.datatype(), info.datatype, "{}: {}", file.display(), info.name);
            assert_eq!(out.shape[0], 2, "{}: {} {:?}", file.display(), info.name, out.shape);
        }
        eprintln!("{}: {:?}", file.display(), sig);
    }
}
