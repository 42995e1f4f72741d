//! Pipelines defined through the API: the one owner of their persistence. A definition is
//! checked against the models, made durable, then served; a removal is made durable, then the
//! pipeline stops being served; at start-up the stored ones are served again. Changes take
//! turns, so the served pipelines always follow the order of the stored changes.

use crate::{ManageError, Manager};
use lectern_pipeline::{Engine, Pipeline, PipelineError};
use std::sync::Arc;

impl Manager {
    /// Checks `definition` (the TOML of a `[pipelines.NAME]` table), stores it, then serves it.
    /// Nothing changes when the check or the store refuses.
    pub async fn define_pipeline(
        &self,
        engine: &Engine,
        actor: &str,
        name: &str,
        definition: &str,
    ) -> Result<Arc<Pipeline>, ManageError> {
        let _turn = self.pipeline_changes.lock().await;
        let pipeline = engine.check(name, definition)?;
        self.store().put_pipeline(actor, name, definition).await?;
        Ok(engine.serve(pipeline))
    }

    /// Removes a pipeline defined through the API: from the store, then from service.
    pub async fn remove_pipeline(&self, engine: &Engine, actor: &str, name: &str) -> Result<(), ManageError> {
        let _turn = self.pipeline_changes.lock().await;
        engine.changeable(name)?;
        let stored = self.store().delete_pipeline(actor, name).await?;
        let served = engine.undefine(name)?;
        if !served && !stored {
            return Err(PipelineError::UnknownPipeline(name.to_string()).into());
        }
        Ok(())
    }

    /// Serves a pipeline as another process (a gateway on the same database) left it: its
    /// stored definition, or nothing when it was removed.
    pub async fn follow_pipeline(&self, engine: &Engine, name: &str) {
        let _turn = self.pipeline_changes.lock().await;
        let stored = match self.store().pipelines().await {
            Ok(all) => all.into_iter().find(|(n, _)| n == name).map(|(_, definition)| definition),
            Err(e) => {
                return tracing::warn!(pipeline = name, error = %e, "cannot read a pipeline another gateway changed")
            }
        };
        let outcome = match stored {
            Some(definition) => engine.define(name, &definition).map(|_| ()),
            None => engine.undefine(name).map(|_| ()),
        };
        if let Err(e) = outcome {
            tracing::warn!(pipeline = name, error = %e, "cannot follow a pipeline another gateway changed");
        }
    }

    /// Serves the stored pipelines (at start-up). One that no longer fits the models is logged
    /// and skipped: it stays stored and can be fixed with another definition. Returns how many
    /// are served.
    pub async fn serve_stored_pipelines(&self, engine: &Engine) -> Result<usize, ManageError> {
        let _turn = self.pipeline_changes.lock().await;
        let mut served = 0;
        for (name, definition) in self.store().pipelines().await? {
            match engine.define(&name, &definition) {
                Ok(_) => served += 1,
                Err(e) => {
                    tracing::warn!(pipeline = %name, error = %e, "a stored pipeline does not fit the models now; not served")
                }
            }
        }
        Ok(served)
    }
}
