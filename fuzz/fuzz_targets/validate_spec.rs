//! Arbitrary bytes as a CilvestPipeline (whole object or spec) in JSON or YAML, and as the worker configuration:
//! parsing and `validate()` never panic, and a spec that validates also yields an X query.
#![no_main]

use cilvest_crds::{CilvestPipeline, CilvestPipelineSpec, WorkerConfig, validate, x_query};
use libfuzzer_sys::fuzz_target;

fn check(spec: &CilvestPipelineSpec) {
    if validate(spec, None).is_ok() {
        assert!(x_query(spec).is_ok(), "a valid spec has no X query");
        assert!(
            validate(spec, Some(spec)).is_ok(),
            "a valid spec is not a valid update of itself"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = serde_json::from_slice::<CilvestPipelineSpec>(data) {
        check(&spec);
    }
    if let Ok(config) = serde_json::from_slice::<WorkerConfig>(data) {
        check(&config.spec);
        // What a worker configuration serializes to, the strict reader takes back.
        let rendered = serde_json::to_vec(&config).expect("serializes");
        assert!(
            WorkerConfig::from_json(&rendered).is_ok(),
            "{}",
            String::from_utf8_lossy(&rendered)
        );
    }
    let _ = WorkerConfig::from_json(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(pipeline) = serde_saphyr::from_str::<CilvestPipeline>(text) {
        check(&pipeline.spec);
    } else if let Ok(spec) = serde_saphyr::from_str::<CilvestPipelineSpec>(text) {
        check(&spec);
    }
});
