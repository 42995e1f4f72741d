use lectern_backends::{load_backend, ENGINES};
use lectern_core::{Tensor, TensorData};
#[test]
fn probe() {
    for m in ["iris-logreg", "cancer-tree", "digits-cnn"] {
        let bytes = std::fs::read(format!("{}/../../examples/models/{m}/1/model.onnx", env!("CARGO_MANIFEST_DIR"))).unwrap();
        for e in ENGINES {
            let b = load_backend(e, &bytes).unwrap();
            eprintln!("{e} {m}: {:?}", b.signature());
            let sig = b.signature().inputs[0].clone();
            let mut shape: Vec<usize> = sig.shape.iter().map(|&d| if d < 0 { 0 } else { d as usize }).collect();
            shape[0] = 0;
            let r = b.session().unwrap().run(vec![Tensor { name: sig.name.clone(), shape, data: TensorData::F32(vec![]) }]);
            eprintln!("{e} {m} zero rows: {r:?}");
        }
    }
}
