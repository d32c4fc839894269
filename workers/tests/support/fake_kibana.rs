//! A fake of Kibana's saved objects import API (`POST /api/saved_objects/_import`), keeping the contract of the
//! public reference: basic authentication (401 otherwise), the `kbn-xsrf` header on every write (400 "Request must
//! contain a kbn-xsrf header." otherwise), a `multipart/form-data` body whose `file` part is an `.ndjson` file (400
//! otherwise), `overwrite=true` to replace objects with the same type and id (without it an existing object is a
//! `conflict` error), and an answer `{"success", "successCount", "successResults", "errors"}` in which an object
//! whose references do not resolve is a `missing_references` error. It also checks each saved object's shape: a
//! known type, an id, `attributes`, `references`, and every `*JSON` attribute a string holding JSON.
//!
//! Faults: the first `unavailable` requests answer 503 "Kibana server is not ready yet", as a starting Kibana does.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use serde_json::{Value, json};

const TYPES: &[&str] = &[
    "index-pattern",
    "visualization",
    "search",
    "dashboard",
    "lens",
    "config",
];

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub query: String,
    pub xsrf: bool,
    pub status: u16,
}

struct FakeState {
    username: String,
    password: String,
    unavailable: u32,
    objects: BTreeMap<(String, String), Value>,
    requests: Vec<Request>,
}

pub struct FakeKibana {
    addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKibana {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeKibana {
    /// A Kibana whose one user is `username`/`password`, answering 503 to its first `unavailable` requests.
    pub async fn start(username: &str, password: &str, unavailable: u32) -> Self {
        let state = Arc::new(Mutex::new(FakeState {
            username: username.to_owned(),
            password: password.to_owned(),
            unavailable,
            objects: BTreeMap::new(),
            requests: Vec::new(),
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let (addr, server) = super::serve(app, "127.0.0.1:0", "Kibana").await;
        Self { addr, state, server }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The saved objects Kibana holds, by type and id.
    pub fn objects(&self) -> BTreeMap<(String, String), Value> {
        self.lock().objects.clone()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    let body =
        json!({"statusCode": status.as_u16(), "error": status.canonical_reason().unwrap_or(""), "message": message});
    (status, [("content-type", "application/json")], body.to_string()).into_response()
}

async fn handle(
    State(state): State<Arc<Mutex<FakeState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    let response = answer(&mut state, &method, &uri, &headers, &body);
    state.requests.push(Request {
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        xsrf: headers.contains_key("kbn-xsrf"),
        status: response.status().as_u16(),
    });
    response
}

fn answer(state: &mut FakeState, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Response {
    if state.unavailable > 0 {
        state.unavailable -= 1;
        return error(StatusCode::SERVICE_UNAVAILABLE, "Kibana server is not ready yet");
    }
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", state.username, state.password))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "[security_exception]: unable to authenticate user",
        );
    }
    if uri.path() != "/api/saved_objects/_import" {
        return error(StatusCode::NOT_FOUND, "Not Found");
    }
    if method != Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    if !headers.contains_key("kbn-xsrf") {
        return error(StatusCode::BAD_REQUEST, "Request must contain a kbn-xsrf header.");
    }
    let query: BTreeMap<String, String> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let overwrite = query.get("overwrite").is_some_and(|v| v == "true");
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(boundary) = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .map(|b| b.trim_matches('"'))
    else {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type");
    };
    let (filename, file) = match file_part(body, boundary) {
        Ok(part) => part,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    if !filename.ends_with(".ndjson") {
        let extension = filename.rsplit_once('.').map_or("", |(_, e)| e);
        return error(StatusCode::BAD_REQUEST, &format!("Invalid file extension .{extension}"));
    }
    let mut imported = Vec::new();
    for (number, line) in file.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let object: Value = match serde_json::from_str(line) {
            Ok(object) => object,
            Err(err) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("Unexpected token in line {number}: {err}"),
                );
            }
        };
        if let Err(message) = shape(&object) {
            return error(StatusCode::BAD_REQUEST, &format!("line {number}: {message}"));
        }
        imported.push(object);
    }
    let key = |o: &Value| {
        (
            o["type"].as_str().unwrap_or_default().to_owned(),
            o["id"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let mut errors = Vec::new();
    let mut results = Vec::new();
    for object in &imported {
        let (kind, id) = key(object);
        let missing: Vec<Value> = object["references"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                let wanted = (
                    r["type"].as_str().unwrap_or_default().to_owned(),
                    r["id"].as_str().unwrap_or_default().to_owned(),
                );
                !state.objects.contains_key(&wanted) && !imported.iter().any(|o| key(o) == wanted)
            })
            .map(|r| json!({"type": r["type"], "id": r["id"]}))
            .collect();
        let title = object["attributes"]["title"].clone();
        if !missing.is_empty() {
            errors.push(json!({"id": id, "type": kind, "title": title,
                               "error": {"type": "missing_references", "references": missing}}));
        } else if state.objects.contains_key(&(kind.clone(), id.clone())) && !overwrite {
            errors.push(json!({"id": id, "type": kind, "title": title, "error": {"type": "conflict"}}));
        } else {
            results.push(json!({"id": id, "type": kind, "meta": {"title": title}, "overwrite": overwrite}));
        }
    }
    for object in imported {
        let k = key(&object);
        let accepted = results
            .iter()
            .any(|r| r["type"] == k.0.as_str() && r["id"] == k.1.as_str());
        if accepted {
            state.objects.insert(k, object);
        }
    }
    let mut answer = json!({"success": errors.is_empty(), "successCount": results.len(), "successResults": results});
    if !errors.is_empty() {
        answer["errors"] = Value::Array(errors);
    }
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        answer.to_string(),
    )
        .into_response()
}

/// The `file` part of a multipart body: its file name and its text.
fn file_part(body: &[u8], boundary: &str) -> Result<(String, String), String> {
    let body = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?;
    let delimiter = format!("--{boundary}");
    for part in body.split(delimiter.as_str()) {
        let part = part.strip_prefix("\r\n").unwrap_or(part);
        let Some((head, content)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let disposition = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition: form-data"))
            .unwrap_or_default();
        if !disposition.contains("name=\"file\"") {
            continue;
        }
        let filename = disposition
            .split("filename=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .ok_or("the file part has no file name")?;
        let content = content.strip_suffix("\r\n").unwrap_or(content);
        return Ok((filename.to_owned(), content.to_owned()));
    }
    Err("[request body.file]: expected value of type [Stream] but got [undefined]".to_owned())
}

/// What Kibana checks of each saved object before importing it.
fn shape(object: &Value) -> Result<(), String> {
    let kind = object["type"].as_str().ok_or("no type")?;
    if !TYPES.contains(&kind) {
        return Err(format!("unsupported type {kind}"));
    }
    if object["id"].as_str().is_none_or(str::is_empty) {
        return Err("no id".to_owned());
    }
    let attributes = object["attributes"].as_object().ok_or("no attributes")?;
    if attributes.get("title").and_then(Value::as_str).is_none() {
        return Err(format!("{kind} has no title"));
    }
    for (name, value) in attributes {
        if name.ends_with("JSON") || name == "visState" {
            let text = value.as_str().ok_or(format!("{name} is not a string"))?;
            serde_json::from_str::<Value>(text).map_err(|err| format!("{name} is not JSON: {err}"))?;
        }
    }
    if let Some(meta) = attributes.get("kibanaSavedObjectMeta") {
        let text = meta["searchSourceJSON"]
            .as_str()
            .ok_or("searchSourceJSON is not a string")?;
        serde_json::from_str::<Value>(text).map_err(|err| format!("searchSourceJSON is not JSON: {err}"))?;
    }
    let references = object["references"].as_array().ok_or("no references list")?;
    for reference in references {
        for field in ["name", "type", "id"] {
            if reference[field].as_str().is_none() {
                return Err(format!("a reference has no {field}"));
            }
        }
    }
    if kind == "dashboard" {
        let panels: Vec<Value> = serde_json::from_str(attributes["panelsJSON"].as_str().unwrap_or("null"))
            .map_err(|err| format!("panelsJSON is not a list: {err}"))?;
        for panel in panels {
            let name = panel["panelRefName"].as_str().ok_or("a panel has no panelRefName")?;
            if !references.iter().any(|r| r["name"] == name) {
                return Err(format!("panel {name} has no reference"));
            }
        }
    }
    Ok(())
}
