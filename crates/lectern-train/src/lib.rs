//! Lectern's training engine: datasets read from a stream with their schema inferred, models
//! learned with smartcore, held-out metrics, export to ONNX (run by tract and onnxruntime alike)
//! and SVG pictures of the model. No HTTP and no SQL: the server and the store wrap this.

pub mod dataset;
pub mod error;
pub mod job;
mod learners;
pub mod metrics;
pub mod model;
pub mod onnx;
pub mod params;
pub mod pictures;
pub mod train;

pub use dataset::{ColumnType, Dataset, Format, Schema};
pub use error::TrainError;
pub use metrics::Metrics;
pub use model::{ModelBody, Task};
pub use train::{check, train, Algorithm, Holdout, Progress, Stage, TrainRequest, TrainedModel};
