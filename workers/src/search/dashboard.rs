//! The pipeline's Kibana saved objects: a data view on the tweets alias, the dashboard's panels, and the dashboard,
//! as the NDJSON that Kibana's saved objects import API takes (`search::kibana` sends it).
//!
//! ```text
//!  index-pattern cilvest-<p>-tweets (title = the alias, time field created_at)
//!     ▲ kibanaSavedObjectMeta.searchSourceJSON.index
//!  visualization cilvest-<p>-{total, per-day, share, per-hour, top-authors}   search cilvest-<p>-posts
//!     ▲ panel_0 … panel_5
//!  dashboard cilvest-<p>
//! ```
//! Every id is derived from the pipeline's name, so importing again with `overwrite=true` replaces the objects
//! instead of adding copies. The panels are aggregation-based visualizations (Kibana's `visualization` type), whose
//! saved form is stable across 7.x and 8.x; each reads only fields of [`super::mapping`] and the tests check that
//! every field a panel aggregates on exists there with a type that aggregation accepts. The day is `local_date` and
//! the hour `local_hour` (both Asia/Jakarta, computed by the daily job), so the charts do not depend on the
//! browser's time zone.

use serde_json::{Value, json};

/// The reference name Kibana uses for a saved object's data view.
const INDEX_REF: &str = "kibanaSavedObjectMeta.searchSourceJSON.index";

/// The stable id of the pipeline's data view.
pub fn data_view_id(pipeline: &str) -> String {
    format!("cilvest-{pipeline}-tweets")
}

/// The stable id of the pipeline's dashboard.
pub fn dashboard_id(pipeline: &str) -> String {
    format!("cilvest-{pipeline}")
}

/// Every saved object of `pipeline` whose tweets are behind `alias`, the objects a panel refers to first.
pub fn saved_objects(pipeline: &str, alias: &str) -> Vec<Value> {
    let view = data_view_id(pipeline);
    let mut objects = vec![json!({
        "type": "index-pattern",
        "id": view,
        "attributes": {
            "title": alias,
            "name": format!("Cilvest {pipeline}: tweets"),
            "timeFieldName": "created_at",
        },
        "references": [],
    })];
    let count = json!({"id": "1", "enabled": true, "type": "count", "schema": "metric", "params": {}});
    let terms = |id: &str, field: &str, schema: &str, size: u32| {
        json!({"id": id, "enabled": true, "type": "terms", "schema": schema,
               "params": {"field": field, "size": size, "order": "desc", "orderBy": "1", "otherBucket": false,
                          "missingBucket": false}})
    };
    let panels = [
        (
            "total",
            "Mentions in the time range",
            "metric",
            json!({"addTooltip": true, "addLegend": false, "type": "metric",
                   "metric": {"percentageMode": false, "useRanges": false, "colorSchema": "Green to Red",
                              "metricColorMode": "None", "colorsRange": [{"from": 0, "to": 10000}],
                              "labels": {"show": true}, "invertColors": false,
                              "style": {"bgFill": "#000", "bgColor": false, "labelColor": false, "subText": "",
                                        "fontSize": 60}}}),
            vec![count.clone()],
        ),
        (
            "per-day",
            "Mentions per keyword per day (Asia/Jakarta)",
            "histogram",
            bar_chart(),
            vec![
                count.clone(),
                json!({"id": "2", "enabled": true, "type": "date_histogram", "schema": "segment",
                       "params": {"field": "local_date", "interval": "d", "min_doc_count": 1, "extended_bounds": {}}}),
                terms("3", "keywords", "group", 10),
            ],
        ),
        (
            "share",
            "Share of mentions per keyword",
            "pie",
            json!({"type": "pie", "addTooltip": true, "addLegend": true, "legendPosition": "right", "isDonut": true,
                   "labels": {"show": false, "values": true, "last_level": true, "truncate": 100}}),
            vec![count.clone(), terms("2", "keywords", "segment", 10)],
        ),
        (
            "per-hour",
            "Mentions per hour of day (Asia/Jakarta)",
            "histogram",
            bar_chart(),
            vec![
                count.clone(),
                json!({"id": "2", "enabled": true, "type": "histogram", "schema": "segment",
                       "params": {"field": "local_hour", "interval": 1, "min_doc_count": false,
                                  "extended_bounds": {"min": 0, "max": 23}}}),
                terms("3", "keywords", "group", 10),
            ],
        ),
        (
            "top-authors",
            "Top authors per keyword",
            "table",
            json!({"perPage": 10, "showPartialRows": false, "showMetricsAtAllLevels": false, "showTotal": false,
                   "totalFunc": "sum", "percentageCol": ""}),
            vec![
                count,
                terms("2", "keywords", "bucket", 10),
                terms("3", "username", "bucket", 10),
            ],
        ),
    ];
    let mut panel_refs = Vec::new();
    for (suffix, title, kind, params, aggs) in panels {
        let id = format!("cilvest-{pipeline}-{suffix}");
        let vis_state = json!({"title": title, "type": kind, "params": params, "aggs": aggs});
        objects.push(json!({
            "type": "visualization",
            "id": id,
            "attributes": {
                "title": title,
                "description": format!("Cilvest pipeline {pipeline}"),
                "visState": vis_state.to_string(),
                "uiStateJSON": "{}",
                "version": 1,
                "kibanaSavedObjectMeta": {"searchSourceJSON": search_source(true).to_string()},
            },
            "references": [{"name": INDEX_REF, "type": "index-pattern", "id": view}],
        }));
        panel_refs.push(("visualization", id));
    }
    let posts = format!("cilvest-{pipeline}-posts");
    objects.push(json!({
        "type": "search",
        "id": posts,
        "attributes": {
            "title": "Posts (cleaned text)",
            "description": format!("Cilvest pipeline {pipeline}: search the cleaned text"),
            "columns": ["local_date", "username", "keywords", "text_clean"],
            "sort": [["created_at", "desc"]],
            "kibanaSavedObjectMeta": {"searchSourceJSON": search_source(true).to_string()},
        },
        "references": [{"name": INDEX_REF, "type": "index-pattern", "id": view}],
    }));
    panel_refs.push(("search", posts));
    objects.push(dashboard(pipeline, &panel_refs));
    objects
}

/// A stacked vertical bar chart's parameters, complete as Kibana's editor saves them (an xy chart without its axes
/// does not render).
fn bar_chart() -> Value {
    json!({
        "type": "histogram",
        "grid": {"categoryLines": false},
        "categoryAxes": [{"id": "CategoryAxis-1", "type": "category", "position": "bottom", "show": true,
                          "scale": {"type": "linear"}, "labels": {"show": true, "filter": true, "truncate": 100},
                          "title": {}}],
        "valueAxes": [{"id": "ValueAxis-1", "name": "LeftAxis-1", "type": "value", "position": "left", "show": true,
                       "scale": {"type": "linear", "mode": "normal"},
                       "labels": {"show": true, "rotate": 0, "filter": false, "truncate": 100},
                       "title": {"text": "Mentions"}}],
        "seriesParams": [{"show": true, "type": "histogram", "mode": "stacked", "data": {"label": "Mentions", "id": "1"},
                          "valueAxis": "ValueAxis-1", "drawLinesBetweenPoints": true, "lineWidth": 2,
                          "showCircles": true}],
        "addTooltip": true,
        "addLegend": true,
        "legendPosition": "right",
        "times": [],
        "addTimeMarker": false,
        "labels": {"show": false},
    })
}

/// The query part of a saved object: empty KQL, no filter, and (for panels) the data view by reference.
fn search_source(with_index: bool) -> Value {
    let mut source = json!({"query": {"query": "", "language": "kuery"}, "filter": []});
    if with_index {
        source["indexRefName"] = json!(INDEX_REF);
    }
    source
}

/// The dashboard: the total across the top, the two keyword charts, the hour chart and the authors table, then the
/// search panel across the full width (Kibana's grid is 48 columns wide).
fn dashboard(pipeline: &str, panels: &[(&str, String)]) -> Value {
    const GRID: [(u32, u32, u32, u32); 6] = [
        (0, 0, 12, 8),
        (12, 0, 36, 16),
        (0, 8, 12, 16),
        (12, 16, 24, 15),
        (36, 16, 12, 15),
        (0, 31, 48, 20),
    ];
    let mut layout = Vec::new();
    let mut references = Vec::new();
    for (index, ((kind, id), (x, y, w, h))) in panels.iter().zip(GRID).enumerate() {
        let panel = index.to_string();
        let reference = format!("panel_{index}");
        layout.push(json!({
            "type": kind,
            "panelIndex": panel,
            "gridData": {"x": x, "y": y, "w": w, "h": h, "i": panel},
            "embeddableConfig": {},
            "panelRefName": reference,
        }));
        references.push(json!({"name": reference, "type": kind, "id": id}));
    }
    json!({
        "type": "dashboard",
        "id": dashboard_id(pipeline),
        "attributes": {
            "title": format!("Cilvest {pipeline}: saham, reksadana, sukuk"),
            "description": "Mentions per keyword, per day and per hour (Asia/Jakarta), top authors, and the posts.",
            "panelsJSON": Value::Array(layout).to_string(),
            "optionsJSON": json!({"useMargins": true, "hidePanelTitles": false}).to_string(),
            "timeRestore": false,
            "version": 1,
            "kibanaSavedObjectMeta": {"searchSourceJSON": search_source(false).to_string()},
        },
        "references": references,
    })
}

/// One object per line, as the import API reads it.
pub fn ndjson(objects: &[Value]) -> String {
    let mut out = String::new();
    for object in objects {
        out.push_str(&object.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn field_type(field: &str) -> Option<String> {
        super::super::mapping()["properties"][field]["type"]
            .as_str()
            .map(str::to_owned)
    }

    /// The types each aggregation accepts, as Kibana offers them in its editor.
    fn accepts(aggregation: &str) -> &'static [&'static str] {
        match aggregation {
            "terms" => &["keyword", "integer", "long", "date", "boolean"],
            "date_histogram" => &["date"],
            "histogram" => &["integer", "long", "float", "double"],
            other => panic!("no rule for the {other} aggregation: add one"),
        }
    }

    #[test]
    fn every_field_a_panel_uses_exists_in_the_mapping_with_a_type_its_aggregation_accepts() {
        let objects = saved_objects("cilvest", "tweets");
        let mut checked = 0;
        for object in &objects {
            match object["type"].as_str() {
                Some("visualization") => {
                    let state: Value =
                        serde_json::from_str(object["attributes"]["visState"].as_str().expect("visState is text"))
                            .expect("visState is JSON");
                    if state["type"] == "histogram" {
                        // An xy chart renders only with its axes, and its series must be one of its metrics.
                        assert!(state["params"]["categoryAxes"][0]["id"].is_string(), "{}", object["id"]);
                        let series = &state["params"]["seriesParams"][0]["data"]["id"];
                        assert!(
                            state["aggs"]
                                .as_array()
                                .expect("aggs")
                                .iter()
                                .any(|a| a["id"] == *series && a["schema"] == "metric"),
                            "{}: series {series} is not a metric",
                            object["id"]
                        );
                    }
                    for agg in state["aggs"].as_array().expect("aggs") {
                        let Some(field) = agg["params"]["field"].as_str() else {
                            assert_eq!(agg["type"], "count", "only a count has no field: {agg}");
                            continue;
                        };
                        let kind = field_type(field).unwrap_or_else(|| panic!("{field} is not in the mapping"));
                        let aggregation = agg["type"].as_str().expect("agg type");
                        assert!(
                            accepts(aggregation).contains(&kind.as_str()),
                            "{} aggregates {field} ({kind}) with {aggregation}",
                            object["id"]
                        );
                        checked += 1;
                    }
                }
                Some("search") => {
                    for column in object["attributes"]["columns"].as_array().expect("columns") {
                        let column = column.as_str().expect("column name");
                        assert!(field_type(column).is_some(), "column {column} is not in the mapping");
                        checked += 1;
                    }
                    let sort = object["attributes"]["sort"][0][0].as_str().expect("sort field");
                    assert_eq!(field_type(sort).as_deref(), Some("date"));
                }
                Some("index-pattern") => {
                    let time = object["attributes"]["timeFieldName"].as_str().expect("time field");
                    assert_eq!(field_type(time).as_deref(), Some("date"), "the time field is a date");
                    assert_eq!(object["attributes"]["title"], "tweets", "the data view is the alias");
                }
                _ => {}
            }
        }
        assert!(checked >= 10, "only {checked} fields checked");
        // A field that is text cannot be aggregated: the check above must catch it.
        assert_eq!(field_type("text_clean").as_deref(), Some("text"));
        assert!(!accepts("terms").contains(&"text"));
    }

    #[test]
    fn references_resolve_and_ids_are_stable() {
        let objects = saved_objects("p1", "tweets");
        let ids: BTreeSet<(String, String)> = objects
            .iter()
            .map(|o| {
                (
                    o["type"].as_str().expect("type").to_owned(),
                    o["id"].as_str().expect("id").to_owned(),
                )
            })
            .collect();
        assert_eq!(ids.len(), objects.len(), "ids are unique");
        for object in &objects {
            for reference in object["references"].as_array().expect("references") {
                let key = (
                    reference["type"].as_str().expect("ref type").to_owned(),
                    reference["id"].as_str().expect("ref id").to_owned(),
                );
                assert!(ids.contains(&key), "{} refers to a missing {key:?}", object["id"]);
            }
        }
        let dashboard = objects.last().expect("a dashboard");
        assert_eq!(dashboard["id"], "cilvest-p1");
        let panels: Vec<Value> =
            serde_json::from_str(dashboard["attributes"]["panelsJSON"].as_str().expect("panelsJSON")).expect("JSON");
        assert_eq!(panels.len(), 6);
        let names: BTreeSet<&str> = dashboard["references"]
            .as_array()
            .expect("refs")
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        for panel in &panels {
            assert!(names.contains(panel["panelRefName"].as_str().expect("panelRefName")));
        }
        assert_eq!(
            saved_objects("p1", "tweets"),
            objects,
            "the same pipeline gives the same objects"
        );
        let text = ndjson(&objects);
        assert_eq!(text.lines().count(), objects.len());
        assert!(text.ends_with('\n'));
    }
}
