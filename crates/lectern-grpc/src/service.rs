//! `inference.GRPCInferenceService` over the server's state: every call answers what the
//! matching HTTP route answers (the shaping is `lectern_server::v2`'s), in protobuf.

use crate::pb::grpc_inference_service_server::GrpcInferenceService;
use crate::pb::model_repository_parameter::ParameterChoice as RepositoryParameter;
use crate::{convert, pb, status};
use futures_util::{Stream, StreamExt};
use lectern_core::ErrorCode;
use lectern_runtime::RuntimeError;
use lectern_server::v2;
use lectern_server::{ApiError, AppState, Principal};
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

/// The service, cloned per connection (an `Arc` of the state).
#[derive(Clone)]
pub struct Inference {
    state: Arc<AppState>,
}

impl Inference {
    pub fn new(state: Arc<AppState>) -> Self {
        Inference { state }
    }

    /// A model `who` may not see (another user's project) answers as one that does not exist,
    /// as the HTTP gate answers a path naming it.
    fn check_visible(&self, who: Option<&Principal>, model: &str) -> Result<(), Status> {
        if self.state.projects.is_none() {
            return Ok(());
        }
        let caller = self.state.caller(who.cloned().map(axum::Extension));
        if self.state.may_see(&caller, model) {
            return Ok(());
        }
        Err(status::from(RuntimeError::ModelNotFound(model.to_string())))
    }

    async fn infer(
        &self,
        who: Option<&Principal>,
        message: pb::ModelInferRequest,
    ) -> Result<pb::ModelInferResponse, Status> {
        let version = version_of(&message.model_name, &message.model_version)?;
        self.check_visible(who, &message.model_name)?;
        let loaded = self.state.registry.model(&message.model_name, version).await.map_err(status::from)?;
        let request = convert::infer_request(message).map_err(status::from)?;
        let response = loaded.infer(request).await.map_err(status::from)?;
        Ok(convert::infer_response(response))
    }

    /// The `n`th message of a stream (from 0). The gate admitted the stream and counted its
    /// first message against the caller's rate limit; each later one is counted here.
    async fn stream_message(
        &self,
        n: usize,
        who: Option<&Principal>,
        message: pb::ModelInferRequest,
    ) -> Result<pb::ModelInferResponse, Status> {
        if let (true, Some(who)) = (n > 0, who) {
            self.state.auth.check_rate(who).map_err(|(refused, _)| status::status(refused))?;
        }
        self.infer(who, message).await
    }
}

/// Who the gate let through: set for the calls that record who acted, and whenever
/// credentials were checked.
fn principal<T>(request: &Request<T>) -> Option<Principal> {
    request.extensions().get::<Principal>().cloned()
}

/// The acting principal of a repository call (the gate sets one for these).
fn actor<T>(request: &Request<T>) -> Principal {
    principal(request).unwrap_or_else(Principal::local)
}

/// An empty version is the newest ready one.
fn version_of(model: &str, version: &str) -> Result<Option<u64>, Status> {
    if version.is_empty() {
        return Ok(None);
    }
    v2::parse_version(model, version).map(Some).map_err(status::status)
}

type StreamOf<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(&self, _: Request<pb::ServerLiveRequest>) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        let ready = v2::readiness(&self.state).await.is_ok();
        Ok(Response::new(pb::ServerReadyResponse { ready }))
    }

    /// Not ready (unknown, unloaded, failed, another user's project): `ready: false`, as
    /// Triton answers, not an error. A model that loads on demand is loaded first.
    async fn model_ready(
        &self,
        request: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let who = principal(&request);
        let pb::ModelReadyRequest { name, version } = request.into_inner();
        let ready = match version_of(&name, &version) {
            Ok(v) if self.check_visible(who.as_ref(), &name).is_ok() => {
                self.state.registry.model(&name, v).await.is_ok()
            }
            _ => false,
        };
        Ok(Response::new(pb::ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        let metadata = v2::server_metadata(&self.state);
        Ok(Response::new(pb::ServerMetadataResponse {
            name: metadata.name,
            version: metadata.version.to_string(),
            extensions: metadata.extensions.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let who = principal(&request);
        let pb::ModelMetadataRequest { name, version } = request.into_inner();
        let version = version_of(&name, &version)?;
        self.check_visible(who.as_ref(), &name)?;
        let metadata = v2::model_metadata(&self.state, &name, version).await.map_err(status::status)?;
        let tensors = |list: Vec<v2::TensorMetadata>| {
            list.into_iter()
                .map(|t| pb::model_metadata_response::TensorMetadata {
                    name: t.name,
                    datatype: t.datatype.to_string(),
                    shape: t.shape,
                })
                .collect()
        };
        Ok(Response::new(pb::ModelMetadataResponse {
            name: metadata.name,
            versions: metadata.versions,
            platform: metadata.platform,
            inputs: tensors(metadata.inputs),
            outputs: tensors(metadata.outputs),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let who = principal(&request);
        Ok(Response::new(self.infer(who.as_ref(), request.into_inner()).await?))
    }

    type ModelStreamInferStream = StreamOf<pb::ModelStreamInferResponse>;

    /// Each request of the stream is answered in turn; a failed one answers with its
    /// `error_message` and the stream goes on. A message that cannot be read ends the stream.
    async fn model_stream_infer(
        &self,
        request: Request<Streaming<pb::ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        let who = principal(&request);
        let this = self.clone();
        let answers = request.into_inner().enumerate().then(move |(n, message)| {
            let (this, who) = (this.clone(), who.clone());
            async move {
                let message = message.map_err(status::recoded)?;
                let answer = match this.stream_message(n, who.as_ref(), message).await {
                    Ok(response) => {
                        pb::ModelStreamInferResponse { error_message: String::new(), infer_response: Some(response) }
                    }
                    Err(failed) => pb::ModelStreamInferResponse {
                        error_message: failed.message().to_string(),
                        infer_response: None,
                    },
                };
                Ok(answer)
            }
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn model_config(
        &self,
        request: Request<pb::ModelConfigRequest>,
    ) -> Result<Response<pb::ModelConfigResponse>, Status> {
        let who = principal(&request);
        let pb::ModelConfigRequest { name, version } = request.into_inner();
        let version = version_of(&name, &version)?;
        self.check_visible(who.as_ref(), &name)?;
        let config = v2::model_config(&self.state, &name, version).await.map_err(status::status)?;
        Ok(Response::new(pb::ModelConfigResponse { config: Some(model_config(config)) }))
    }

    async fn model_statistics(
        &self,
        request: Request<pb::ModelStatisticsRequest>,
    ) -> Result<Response<pb::ModelStatisticsResponse>, Status> {
        let caller = self.state.caller(principal(&request).map(axum::Extension));
        let pb::ModelStatisticsRequest { name, version } = request.into_inner();
        let version = version_of(&name, &version)?;
        let model = (!name.is_empty()).then_some(name.as_str());
        if model.is_none() && version.is_some() {
            return Err(status::status(ApiError::bad_request("a version needs a model name")));
        }
        let stats = v2::model_statistics(&self.state, &caller, model, version).map_err(status::status)?;
        Ok(Response::new(pb::ModelStatisticsResponse {
            model_stats: stats.model_stats.into_iter().map(statistics).collect(),
        }))
    }

    async fn repository_index(
        &self,
        request: Request<pb::RepositoryIndexRequest>,
    ) -> Result<Response<pb::RepositoryIndexResponse>, Status> {
        let who = actor(&request);
        let rows = v2::repository_index(&self.state, &who, request.get_ref().ready);
        let models = rows
            .into_iter()
            .map(|row| pb::repository_index_response::ModelIndex {
                name: row.name,
                version: row.version.unwrap_or_default(),
                state: row.state.to_string(),
                reason: row.reason,
            })
            .collect();
        Ok(Response::new(pb::RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        request: Request<pb::RepositoryModelLoadRequest>,
    ) -> Result<Response<pb::RepositoryModelLoadResponse>, Status> {
        let who = actor(&request);
        let pb::RepositoryModelLoadRequest { model_name, parameters, .. } = request.into_inner();
        self.check_visible(Some(&who), &model_name)?;
        if let Some(file) = parameters.keys().find(|k| k.starts_with("file:")) {
            // Triton answers INTERNAL with these words when it cannot take a file sent with
            // the load (and its clients test for both): Lectern takes none.
            let shown: String = file.chars().take(64).collect();
            let message = format!(
                "failed to load '{model_name}': failed to poll from model repository: model files sent with the \
                 request ('{shown}') are not accepted; upload the model with PUT /v1/models/{{name}}/versions/{{version}}"
            );
            return Err(status::with_code(Status::internal(message), ErrorCode::ModelLoadFailed));
        }
        let config = match parameters.get("config").and_then(|p| p.parameter_choice.as_ref()) {
            None => None,
            Some(RepositoryParameter::StringParam(text)) => Some(text.clone()),
            Some(RepositoryParameter::BytesParam(bytes)) if std::str::from_utf8(bytes).is_ok() => {
                Some(String::from_utf8_lossy(bytes).into_owned())
            }
            Some(_) => {
                let message = format!("failed to load '{model_name}': the config override must be JSON text (UTF-8)");
                return Err(status::status(ApiError::coded(ErrorCode::ModelLoadFailed, message)));
            }
        };
        v2::load_model(&self.state, &who, &model_name, config.as_deref()).await.map_err(status::status)?;
        Ok(Response::new(pb::RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<pb::RepositoryModelUnloadRequest>,
    ) -> Result<Response<pb::RepositoryModelUnloadResponse>, Status> {
        let who = actor(&request);
        let model = &request.get_ref().model_name;
        self.check_visible(Some(&who), model)?;
        self.state.manager.unload(&who.actor, model).await.map_err(status::from)?;
        Ok(Response::new(pb::RepositoryModelUnloadResponse {}))
    }
}

fn model_config(c: v2::ModelConfiguration) -> pb::ModelConfig {
    use pb::model_version_policy::{Latest, PolicyChoice, Specific};
    let tensor_type = |name: &str| pb::DataType::from_str_name(name).unwrap_or(pb::DataType::TypeInvalid) as i32;
    let policy = match (c.version_policy.get("specific"), c.version_policy.get("latest")) {
        (Some(specific), _) => PolicyChoice::Specific(Specific {
            versions: specific["versions"].as_array().into_iter().flatten().filter_map(|v| v.as_i64()).collect(),
        }),
        (None, latest) => PolicyChoice::Latest(Latest {
            num_versions: latest.and_then(|l| l["num_versions"].as_u64()).unwrap_or(1) as u32,
        }),
    };
    pb::ModelConfig {
        input: c
            .input
            .into_iter()
            .map(|t| pb::ModelInput { data_type: tensor_type(&t.data_type), name: t.name, dims: t.dims })
            .collect(),
        output: c
            .output
            .into_iter()
            .map(|t| pb::ModelOutput { data_type: tensor_type(&t.data_type), name: t.name, dims: t.dims })
            .collect(),
        name: c.name,
        platform: c.platform,
        backend: c.backend,
        version_policy: Some(pb::ModelVersionPolicy { policy_choice: Some(policy) }),
        max_batch_size: i32::try_from(c.max_batch_size).unwrap_or(i32::MAX),
        instance_group: c
            .instance_group
            .into_iter()
            .map(|g| pb::ModelInstanceGroup {
                name: g.name,
                count: i32::try_from(g.count).unwrap_or(i32::MAX),
                kind: pb::model_instance_group::Kind::from_str_name(g.kind).unwrap_or_default() as i32,
            })
            .collect(),
        default_model_filename: c.default_model_filename.to_string(),
        scheduling_choice: c.dynamic_batching.map(|d| {
            pb::model_config::SchedulingChoice::DynamicBatching(pb::ModelDynamicBatching {
                preferred_batch_size: d.preferred_batch_size.iter().map(|&n| n as i32).collect(),
                max_queue_delay_microseconds: d.max_queue_delay_microseconds,
            })
        }),
    }
}

fn duration(d: v2::Duration) -> Option<pb::StatisticDuration> {
    Some(pb::StatisticDuration { count: d.count, ns: d.ns })
}

fn statistics(s: v2::ModelStatistics) -> pb::ModelStatistics {
    let i = s.inference_stats;
    pb::ModelStatistics {
        name: s.name,
        version: s.version,
        last_inference: s.last_inference,
        inference_count: s.inference_count,
        execution_count: s.execution_count,
        inference_stats: Some(pb::InferStatistics {
            success: duration(i.success),
            fail: duration(i.fail),
            queue: duration(i.queue),
            compute_input: duration(i.compute_input),
            compute_infer: duration(i.compute_infer),
            compute_output: duration(i.compute_output),
            cache_hit: duration(i.cache_hit),
            cache_miss: duration(i.cache_miss),
        }),
        batch_stats: s
            .batch_stats
            .into_iter()
            .map(|b| pb::InferBatchStatistics {
                batch_size: b.batch_size,
                compute_input: duration(b.compute_input),
                compute_infer: duration(b.compute_infer),
                compute_output: duration(b.compute_output),
            })
            .collect(),
    }
}
