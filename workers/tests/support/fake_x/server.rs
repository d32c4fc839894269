//! The HTTP side of the fake: each request recorded, faults, bearer authentication, the rate-limit window and its
//! headers, and problem-JSON errors.

use std::collections::BTreeMap;

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use chrono::Utc;
use serde_json::json;

use super::pages::{counts_page, search_page};
use super::{FakeState, Fault, INVALID_REQUEST, Request, Shared, lock, reset_after};

fn problem(status: StatusCode, title: &str, detail: &str, kind: &str) -> (StatusCode, String) {
    let body = json!({"title": title, "detail": detail, "type": kind, "status": status.as_u16()});
    (status, body.to_string())
}

fn invalid_request(message: String) -> (StatusCode, String) {
    let body = json!({
        "errors": [{"parameters": {}, "message": message}],
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": INVALID_REQUEST,
    });
    (StatusCode::BAD_REQUEST, body.to_string())
}

pub(super) async fn search(State(state): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    serve(state, headers, uri, "search").await
}

pub(super) async fn counts(State(state): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    serve(state, headers, uri, "counts").await
}

async fn serve(state: Shared, headers: HeaderMap, uri: Uri, endpoint: &'static str) -> Response {
    let params: BTreeMap<String, String> = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let now = Utc::now();
    let (index, fault) = {
        let mut state = lock(&state);
        let fault = state.faults.pop_front().unwrap_or(Fault::Pass);
        state.requests.push(Request {
            at: now,
            endpoint,
            status: 0,
            params: params.clone(),
            served: 0,
            reset: None,
        });
        (state.requests.len() - 1, fault)
    };
    if let Fault::Delay(delay) = fault {
        tokio::time::sleep(delay).await;
    }
    let mut state = lock(&state);
    let (status, body, served, rate_headers) = answer(&mut state, &headers, &params, fault, endpoint);
    state.requests[index].status = status.as_u16();
    state.requests[index].served = served;
    state.requests[index].reset = rate_headers.map(|(_, _, reset)| reset);
    state.posts_served += served as u64;
    let mut response = (status, [("content-type", "application/json; charset=utf-8")], body).into_response();
    if let Some((limit, remaining, reset)) = rate_headers {
        let headers = response.headers_mut();
        for (name, value) in [
            ("x-rate-limit-limit", limit.to_string()),
            ("x-rate-limit-remaining", remaining.to_string()),
            ("x-rate-limit-reset", reset.to_string()),
        ] {
            if let Ok(value) = value.parse() {
                headers.insert(name, value);
            }
        }
    }
    response
}

type Answer = (StatusCode, String, usize, Option<(u64, u64, i64)>);

fn answer(
    state: &mut FakeState,
    headers: &HeaderMap,
    params: &BTreeMap<String, String>,
    fault: Fault,
    endpoint: &str,
) -> Answer {
    let now = Utc::now();
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", state.token));
    if matches!(fault, Fault::Unauthorized) || !authorized {
        let (status, body) = problem(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized", "about:blank");
        return (status, body, 0, None);
    }

    // Rate limiting: a new window once the old one has reset; an injected 429 exhausts the window until then.
    if now >= state.window.reset {
        state.window.remaining = state.window.limit;
        state.window.reset = reset_after(now, state.window.length);
    }
    if let Fault::RateLimited { reset_in } = fault {
        state.window.remaining = 0;
        state.window.reset = reset_after(now, reset_in);
    }
    let limit = state.window.limit;
    if state.window.remaining == 0 {
        let (status, body) = problem(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests",
            "Too Many Requests",
            "about:blank",
        );
        return (status, body, 0, Some((limit, 0, state.window.reset.timestamp())));
    }
    state.window.remaining -= 1;
    let rate = Some((limit, state.window.remaining, state.window.reset.timestamp()));

    match fault {
        Fault::Unavailable => {
            let (status, body) = problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                "Service Unavailable",
                "about:blank",
            );
            return (status, body, 0, rate);
        }
        Fault::Malformed => return (StatusCode::OK, r#"{"data":[{"id":"18500"#.to_owned(), 0, rate),
        _ => {}
    }

    let page = if endpoint == "counts" {
        // Counts answers carry no posts: nothing of them is served against the post cap.
        counts_page(state, params, now).map(|body| (body, 0))
    } else {
        search_page(state, params, now)
    };
    match page {
        Ok((body, served)) => (StatusCode::OK, body.to_string(), served, rate),
        Err(message) => {
            let (status, body) = invalid_request(message);
            (status, body, 0, rate)
        }
    }
}
