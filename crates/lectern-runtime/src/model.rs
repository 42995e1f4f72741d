//! A loaded model version: checks a request against the model's signature, queues it to the
//! worker, and shapes the outputs the caller asked for.

use crate::metrics::ModelMetrics;
use crate::source::SourceFuture;
use crate::worker::{Job, JobError, SubmitError, Worker};
use crate::RuntimeError;
use lectern_backends::{Backend, Signature, TensorInfo, TextEncoding};
use lectern_core::{ImageSpec, InferRequest, InferResponse, RequestedOutput, ResponseOutput, Tensor, TensorData};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A model version that is loaded and serving.
pub struct LoadedModel {
    pub name: String,
    pub version: u64,
    pub signature: Signature,
    pub labels: Option<Vec<String>>,
    /// How pictures become this model's input, when its config says.
    pub image: Option<ImageSpec>,
    /// Largest batch along the first dimension; 0: the model has no batch dimension.
    pub max_batch_size: usize,
    /// A text encoder whose vectors may be cut short (its config's `matryoshka`).
    pub matryoshka: bool,
    pub metrics: Arc<ModelMetrics>,
    /// The config it was loaded with (none for a version served by another process).
    pub config: Option<Arc<lectern_core::ModelConfig>>,
    /// Memory the version took when it loaded (the larger of its file's size and the growth
    /// of the process's resident memory across the load); 0 for a version served elsewhere.
    pub resident_bytes: u64,
    /// How much the process's resident memory grew at the peak of the version's load (what a
    /// load of it again needs free).
    pub load_peak_bytes: u64,
    /// When a request last used it, on the process's use clock (see [`LoadedModel::touch`]).
    last_used: AtomicU64,
    runner: Runner,
}

/// Counts uses across every model: the least recently used version has the smallest tick.
static USE_CLOCK: AtomicU64 = AtomicU64::new(1);

fn tick() -> u64 {
    USE_CLOCK.fetch_add(1, Relaxed)
}

/// Where a loaded version runs its requests.
enum Runner {
    /// In this process: the engine, and the worker threads that batch requests for it.
    Local { backend: Arc<dyn Backend>, worker: Worker },
    /// In another process (a cluster worker), which is sent each request whole.
    Remote { platform: String, text: Option<TextEncoding>, remote: Arc<dyn Remote> },
}

/// Runs requests on model versions served by another process.
pub trait Remote: Send + Sync {
    /// Runs `request` on `model` version `version` there; the answer is shaped as asked.
    fn infer<'a>(
        &'a self,
        model: &'a str,
        version: u64,
        request: InferRequest,
    ) -> SourceFuture<'a, Result<InferResponse, RuntimeError>>;
}

/// What describes a version served elsewhere (what [`LoadedModel::remote`] builds from).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteVersion {
    pub name: String,
    pub version: u64,
    pub platform: String,
    pub signature: Signature,
    pub labels: Option<Vec<String>>,
    pub image: Option<ImageSpec>,
    pub max_batch_size: usize,
    pub matryoshka: bool,
    pub text: Option<TextEncoding>,
}

impl LoadedModel {
    pub(crate) fn new(
        name: String,
        version: u64,
        signature: Signature,
        max_batch_size: usize,
        metrics: Arc<ModelMetrics>,
        backend: Arc<dyn Backend>,
        worker: Worker,
    ) -> Self {
        LoadedModel {
            name,
            version,
            signature,
            labels: None,
            image: None,
            max_batch_size,
            matryoshka: false,
            metrics,
            config: None,
            resident_bytes: 0,
            load_peak_bytes: 0,
            last_used: AtomicU64::new(tick()),
            runner: Runner::Local { backend, worker },
        }
    }

    /// A version served by another process: requests go to `remote` whole.
    pub fn remote(described: RemoteVersion, metrics: Arc<ModelMetrics>, remote: Arc<dyn Remote>) -> Self {
        let RemoteVersion { name, version, platform, signature, labels, image, max_batch_size, matryoshka, text } =
            described;
        LoadedModel {
            name,
            version,
            signature,
            labels,
            image,
            max_batch_size,
            matryoshka,
            metrics,
            config: None,
            resident_bytes: 0,
            load_peak_bytes: 0,
            last_used: AtomicU64::new(tick()),
            runner: Runner::Remote { platform, text, remote },
        }
    }

    /// Marks the version as used now (the memory budget unloads the least recently used).
    pub fn touch(&self) {
        self.last_used.store(tick(), Relaxed);
    }

    /// When the version was last used (loading counts as a use); larger is more recent.
    pub fn last_used(&self) -> u64 {
        self.last_used.load(Relaxed)
    }

    /// What a remote gateway needs to know of this version to send it requests.
    pub fn describe(&self) -> RemoteVersion {
        RemoteVersion {
            name: self.name.clone(),
            version: self.version,
            platform: self.platform().to_string(),
            signature: self.signature.clone(),
            labels: self.labels.clone(),
            image: self.image.clone(),
            max_batch_size: self.max_batch_size,
            matryoshka: self.matryoshka,
            text: self.text().cloned(),
        }
    }

    /// Stops a version served here and waits, at most `timeout`, for its threads to end.
    pub fn stop(self, timeout: Duration) {
        if let Runner::Local { backend, worker } = self.runner {
            drop(backend);
            worker.stop(timeout);
        }
    }

    /// Whether requests run in another process.
    pub fn is_remote(&self) -> bool {
        matches!(self.runner, Runner::Remote { .. })
    }

    /// The platform model metadata names (`onnx`, `sentence_transformers`).
    pub fn platform(&self) -> &str {
        match &self.runner {
            Runner::Local { backend, .. } => backend.platform(),
            Runner::Remote { platform, .. } => platform,
        }
    }

    /// For a text encoder, what its texts and vectors are.
    pub fn text(&self) -> Option<&TextEncoding> {
        match &self.runner {
            Runner::Local { backend, .. } => backend.text(),
            Runner::Remote { text, .. } => text.as_ref(),
        }
    }

    /// Adds the class names and the image conversion from the model's config.
    pub(crate) fn described(mut self, labels: Option<Vec<String>>, image: Option<ImageSpec>) -> Self {
        self.labels = labels;
        self.image = image;
        self
    }

    /// Runs one request and counts it in the model's metrics.
    pub async fn infer(&self, request: InferRequest) -> Result<InferResponse, RuntimeError> {
        let arrived = Instant::now();
        let result = self.infer_uncounted(request, arrived).await;
        self.metrics.answered(result.is_ok(), arrived.elapsed());
        result
    }

    async fn infer_uncounted(&self, request: InferRequest, arrived: Instant) -> Result<InferResponse, RuntimeError> {
        let (backend, worker) = match &self.runner {
            Runner::Local { backend, worker } => (backend, worker),
            // The serving process checks the request against the model, as it would here.
            Runner::Remote { remote, .. } => return remote.infer(&self.name, self.version, request).await,
        };
        let outputs = self.requested_outputs(&request)?;
        let rows = self.batch_rows(&request.inputs)?;
        let inputs = self.order_inputs(request.inputs)?;
        backend.check(&inputs).map_err(|e| RuntimeError::BadRequest(e.to_string()))?;
        let (reply, answer) = oneshot::channel();
        let deadline = (request.timeout_us > 0).then(|| arrived + Duration::from_micros(request.timeout_us));
        let job = Job { inputs, rows, priority: request.priority, enqueued: arrived, deadline, reply };
        if let Err(SubmitError::Full) = worker.submit(job) {
            self.metrics.queue_rejected.fetch_add(1, Relaxed);
            return Err(RuntimeError::QueueFull(self.label()));
        }
        let computed = match answer.await {
            Ok(Ok(tensors)) => tensors,
            Ok(Err(JobError::Backend(e @ lectern_backends::BackendError::BadInput { .. }))) => {
                return Err(RuntimeError::BadRequest(e.to_string()))
            }
            Ok(Err(JobError::Backend(e))) => return Err(RuntimeError::Inference(self.label(), e.to_string())),
            Ok(Err(JobError::Expired)) => return Err(RuntimeError::DeadlineExpired(request.timeout_us)),
            Err(_) => return Err(RuntimeError::NotReady(self.label(), "it was unloaded".into())),
        };
        if request.refuse_over_length {
            self.refuse_over_length(&computed)?;
        }
        let outputs = match outputs {
            None => {
                computed.into_iter().map(|tensor| ResponseOutput { tensor, binary: request.binary_output }).collect()
            }
            Some(wanted) => self.shape_outputs(computed, &wanted, request.binary_output)?,
        };
        Ok(InferResponse {
            model_name: self.name.clone(),
            model_version: self.version.to_string(),
            id: request.id,
            outputs,
        })
    }

    /// For a text encoder: refuses the request when a text had more tokens than the model
    /// takes (its `token_count` output counts them before truncation).
    fn refuse_over_length(&self, computed: &[Tensor]) -> Result<(), RuntimeError> {
        let Some(text) = self.text() else { return Ok(()) };
        let counts = computed.iter().find(|t| t.name == lectern_backends::encoder::TOKEN_COUNT_OUTPUT);
        let Some(TensorData::I64(counts)) = counts.map(|t| &t.data) else { return Ok(()) };
        refuse_over_length(&self.name, counts.iter().map(|&n| n.max(0) as u64), text.max_tokens)
    }

    fn label(&self) -> String {
        format!("{}:{}", self.name, self.version)
    }

    /// The outputs the caller listed, checked; `None`: all of them, in the model's order.
    fn requested_outputs(&self, request: &InferRequest) -> Result<Option<Vec<RequestedOutput>>, RuntimeError> {
        if request.outputs.is_empty() {
            return Ok(None);
        }
        for wanted in &request.outputs {
            if !self.signature.outputs.iter().any(|o| o.name == wanted.name) {
                return Err(RuntimeError::BadRequest(format!(
                    "model '{}' has no output '{}' (outputs: {})",
                    self.name,
                    wanted.name,
                    names(&self.signature.outputs)
                )));
            }
        }
        Ok(Some(request.outputs.clone()))
    }

    /// Puts the inputs in signature order, checking names, datatypes and shapes.
    fn order_inputs(&self, given: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
        order_inputs(&self.name, &self.signature.inputs, given)
    }

    /// Rows in the request's batch (1 when the model has no batch dimension).
    fn batch_rows(&self, inputs: &[Tensor]) -> Result<usize, RuntimeError> {
        batch_rows(&self.name, self.max_batch_size, inputs)
    }

    fn shape_outputs(
        &self,
        mut computed: Vec<Tensor>,
        wanted: &[RequestedOutput],
        binary_default: bool,
    ) -> Result<Vec<ResponseOutput>, RuntimeError> {
        let mut out = Vec::with_capacity(wanted.len());
        for request in wanted {
            let ix = computed.iter().position(|t| t.name == request.name).expect("checked against signature");
            let tensor = if wanted.iter().filter(|w| w.name == request.name).count() > 1 {
                computed[ix].clone()
            } else {
                computed.swap_remove(ix)
            };
            let tensor = match request.classification {
                Some(k) => classify(&tensor, k, self.labels.as_deref())?,
                None => tensor,
            };
            out.push(ResponseOutput { tensor, binary: request.binary.unwrap_or(binary_default) });
        }
        Ok(out)
    }
}

/// Refuses texts of more than `max_tokens` tokens (`counts` in the texts' order), naming the
/// first one.
pub(crate) fn refuse_over_length(
    model: &str,
    counts: impl IntoIterator<Item = u64>,
    max_tokens: usize,
) -> Result<(), RuntimeError> {
    match counts.into_iter().enumerate().find(|&(_, n)| n as usize > max_tokens) {
        None => Ok(()),
        Some((row, n)) => Err(RuntimeError::BadRequest(format!(
            "text {row} has {n} tokens; model '{model}' takes at most {max_tokens} (the request asked not to truncate)"
        ))),
    }
}

/// Puts `given` in the order of the model's `inputs`, checking names, datatypes and shapes
/// (requests, and warmup samples taken from a request).
pub(crate) fn order_inputs(
    model: &str,
    inputs: &[TensorInfo],
    mut given: Vec<Tensor>,
) -> Result<Vec<Tensor>, RuntimeError> {
    if let Some(unknown) = given.iter().find(|t| !inputs.iter().any(|i| i.name == t.name)) {
        return Err(RuntimeError::BadRequest(format!(
            "model '{model}' has no input '{}' (inputs: {})",
            unknown.name,
            names(inputs)
        )));
    }
    let mut ordered = Vec::with_capacity(inputs.len());
    for info in inputs {
        let ix = given
            .iter()
            .position(|t| t.name == info.name)
            .ok_or_else(|| RuntimeError::BadRequest(format!("input '{}' of model '{model}' is missing", info.name)))?;
        let tensor = given.swap_remove(ix);
        check_input(info, &tensor)?;
        ordered.push(tensor);
    }
    Ok(ordered)
}

/// Rows in a batch of `inputs` (1 when the model has no batch dimension), at most `max`.
pub(crate) fn batch_rows(model: &str, max: usize, inputs: &[Tensor]) -> Result<usize, RuntimeError> {
    let rows = match inputs.first() {
        Some(first) if max > 0 => first.shape.first().copied().unwrap_or(1),
        _ => return Ok(1),
    };
    if rows > max {
        return Err(RuntimeError::BadRequest(format!(
            "batch of {rows} rows is over the max_batch_size {max} of model '{model}'"
        )));
    }
    Ok(rows)
}

fn names(infos: &[TensorInfo]) -> String {
    infos.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
}

fn check_input(info: &TensorInfo, tensor: &Tensor) -> Result<(), RuntimeError> {
    if tensor.datatype() != info.datatype {
        return Err(RuntimeError::BadRequest(format!(
            "input '{}' must be {}, not {}",
            info.name,
            info.datatype,
            tensor.datatype()
        )));
    }
    let fits = tensor.shape.len() == info.shape.len()
        && tensor.shape.iter().zip(&info.shape).all(|(&got, &want)| want < 0 || got as i64 == want);
    if !fits {
        return Err(RuntimeError::BadRequest(format!(
            "input '{}' has shape {:?} but the model expects {:?} (-1: any size)",
            info.name, tensor.shape, info.shape
        )));
    }
    Ok(())
}

/// Triton's classification extension: the top `k` entries of each row as
/// `"<score>:<index>[:<label>]"` strings, highest first.
pub fn classify(tensor: &Tensor, k: usize, labels: Option<&[String]>) -> Result<Tensor, RuntimeError> {
    let scores = tensor.data.to_f64_vec().ok_or_else(|| {
        RuntimeError::BadRequest(format!("output '{}' is BYTES and cannot be classified", tensor.name))
    })?;
    let classes = tensor.shape.last().copied().unwrap_or(1).max(1);
    let k = k.min(classes);
    let rows = scores.len() / classes;
    let mut strings = Vec::with_capacity(rows * k);
    for row in scores.chunks(classes) {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        for &ix in order.iter().take(k) {
            let text = match labels.and_then(|l| l.get(ix)) {
                Some(label) => format!("{}:{ix}:{label}", row[ix] as f32),
                None => format!("{}:{ix}", row[ix] as f32),
            };
            strings.push(text.into_bytes());
        }
    }
    let mut shape = tensor.shape.clone();
    match shape.last_mut() {
        Some(last) => *last = k,
        None => shape.push(k),
    }
    Ok(Tensor { name: tensor.name.clone(), shape, data: TensorData::Bytes(strings) })
}
