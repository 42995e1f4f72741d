//! Start-up checks of pipelines against the two-layer example's real models: every mistake is
//! refused with the config line that holds it.

use lectern_pipeline::Engine;
use lectern_runtime::{MetricsRegistry, Registry};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/two-layer/models")
}

async fn registry() -> Arc<Registry> {
    let registry = Arc::new(Registry::from_folder(models(), Arc::new(MetricsRegistry::default())));
    registry.load_all().await.unwrap();
    registry
}

const GOOD_ROUTE: &str = r#"{ id = "digit", route = "category.label", models = { round = "digit-round", straight = "digit-straight", curved = "digit-curved" }, image = "image" }"#;

fn config(second_step: &str) -> String {
    format!(
        "[pipelines.p]\nsteps = [\n  {{ id = \"category\", model = \"digit-category\", image = \"image\" }},\n  {second_step},\n]\n"
    )
}

async fn build_error(text: &str) -> String {
    match Engine::build(text, "test.toml", Path::new("."), registry().await) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn the_two_layer_pipeline_is_accepted() {
    let engine = Engine::build(&config(GOOD_ROUTE), "test.toml", Path::new("."), registry().await).unwrap();
    assert_eq!(engine.pipelines().len(), 1);
}

#[tokio::test]
async fn a_route_key_that_is_not_a_label_is_refused_on_its_line() {
    let step = GOOD_ROUTE.replace("curved = ", "wavy = ");
    let e = build_error(&config(&step)).await;
    assert!(e.starts_with("test.toml:4:"), "{e}");
    assert!(e.contains("route key 'wavy' is not a label of model 'digit-category'"), "{e}");
}

#[tokio::test]
async fn a_label_without_route_needs_a_default() {
    let step = GOOD_ROUTE.replace(", curved = \"digit-curved\"", "");
    let e = build_error(&config(&step)).await;
    assert!(e.contains("label 'curved' of model 'digit-category' has no route"), "{e}");
    let with_default = step.replace("image = \"image\"", "default = \"digit-curved\", image = \"image\"");
    Engine::build(&config(&with_default), "test.toml", Path::new("."), registry().await).unwrap();
}

#[tokio::test]
async fn unknown_models_llms_and_later_steps_are_refused() {
    let e = build_error(&config(r#"{ id = "x", model = "nope", image = "image" }"#)).await;
    assert!(e.contains("test.toml:4:") && e.contains("unknown model 'nope'"), "{e}");
    let e = build_error(&config(r#"{ id = "x", llm = "tutor", topic = "input.a", prompt = "hi" }"#)).await;
    assert!(e.contains("unknown llm 'tutor'"), "{e}");
    let text = config(r#"{ id = "x", output = "{{ y }}" }, { id = "y", output = "b" }"#);
    let e = build_error(&text).await;
    assert!(e.contains("refers to step 'y', which does not run before it"), "{e}");
    let e = build_error(&config(r#"{ id = "x", output = "hi", when = "category.label ==" }"#)).await;
    assert!(e.contains("when:"), "{e}");
    let e = build_error(&config(r#"{ id = "x", model = "digit-round", inputs = ["a", "b"] }"#)).await;
    assert!(e.contains("takes shape [-1, 64], not rows of 2 fields"), "{e}");
}
