//! `validate()` and the X query builder against the examples and the table of bad specs.

use cilvest_crds::{CilvestPipeline, CilvestPipelineSpec, validate, validate::FieldError, x_query};
use serde::Deserialize;
use serde_json::Value;

const FULL: &str = include_str!("../../examples/cilvest.yaml");
const MINIMAL: &str = include_str!("../../examples/minimal.yaml");
const BAD_SPECS: &str = include_str!("bad-specs.yaml");

#[derive(Deserialize)]
struct BadSpec {
    case: String,
    patch: Value,
    #[serde(default)]
    previous: Option<Value>,
    field: String,
}

fn full_spec_json() -> Value {
    let pipeline: CilvestPipeline = serde_saphyr::from_str(FULL).expect("examples/cilvest.yaml parses");
    serde_json::to_value(pipeline.spec).expect("spec to json")
}

fn patched(patch: &Value) -> CilvestPipelineSpec {
    let mut spec = full_spec_json();
    json_patch::merge(&mut spec, patch);
    serde_json::from_value(spec).expect("patched spec still deserializes")
}

#[test]
fn both_examples_are_valid() {
    for (name, text) in [("cilvest.yaml", FULL), ("minimal.yaml", MINIMAL)] {
        let pipeline: CilvestPipeline = serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        validate(&pipeline.spec, None).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn every_bad_spec_is_rejected_naming_its_field() {
    let cases: Vec<BadSpec> = serde_saphyr::from_str(BAD_SPECS).expect("bad-specs.yaml parses");
    assert!(cases.len() >= 12, "the table keeps at least 12 cases");
    for case in cases {
        let spec = patched(&case.patch);
        let previous = case.previous.as_ref().map(patched);
        if let Some(previous) = &previous {
            validate(previous, None).unwrap_or_else(|e| panic!("{}: the previous spec must be valid: {e}", case.case));
        }
        let errors = validate(&spec, previous.as_ref()).map_or_else(|e| e.0, |()| Vec::new());
        assert!(
            errors.iter().any(|FieldError { path, .. }| path == &case.field),
            "{}: expected an error at {}, got {errors:?}",
            case.case,
            case.field
        );
    }
}

#[test]
fn validate_reports_every_problem_at_once() {
    let spec =
        patched(&serde_json::json!({"keywords": [], "schedule": {"daily": "x"}, "topics": {"raw": {"partitions": 0}}}));
    let errors = validate(&spec, None).expect_err("invalid").0;
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    for field in ["spec.keywords", "spec.schedule.daily", "spec.topics.raw.partitions"] {
        assert!(paths.contains(&field), "{field} missing from {paths:?}");
    }
}

#[test]
fn rules_beyond_types_name_the_field_as_the_api_server_does() {
    for (patch, field) in [
        (
            serde_json::json!({"schedule": {"timeZone": "Mars/Olympus_Mons"}}),
            "spec.schedule.timeZone",
        ),
        (
            serde_json::json!({"source": {"x": {"backfill": "8d"}}}),
            "spec.source.x.backfill",
        ),
        (
            serde_json::json!({"keywords": [{"name": "saham", "terms": ["saham"]}, {"name": "saham", "terms": ["ihsg"]}]}),
            // A repeated key of a list of type map: the API server names the entry.
            "spec.keywords[1]",
        ),
    ] {
        let errors = validate(&patched(&patch), None).expect_err("invalid").0;
        assert!(errors.iter().any(|e| e.path == field), "{field}: {errors:?}");
    }
}

#[test]
fn query_for_cilvest_keywords() {
    let spec = patched(&serde_json::json!({}));
    assert_eq!(
        x_query(&spec).expect("fits"),
        r##"(saham OR #saham OR reksadana OR "reksa dana" OR #reksadana OR sukuk OR #sukuk) lang:id -is:retweet"##
    );
}

#[test]
fn query_uses_the_canonical_language_code_and_keeps_retweets_when_asked() {
    let spec = patched(
        &serde_json::json!({"language": "in", "dropRetweets": false, "keywords": [{"name": "saham", "terms": ["saham", "SAHAM"]}]}),
    );
    assert_eq!(x_query(&spec).expect("fits"), "(saham) lang:id");
}
