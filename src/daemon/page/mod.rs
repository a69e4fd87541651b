//! The status page, on `metrics_listen` beside `/metrics`: read-only, server-rendered, no
//! script and no external asset, so it works on a host without internet and a hostile
//! banner or certificate name has nothing to run in.
//!
//! * `GET /`: every connector, worst first ([`render::list`]).
//! * `GET /connector/<name>`: one connector's targets, stages, timings, certificates, fix
//!   and 24-hour timeline ([`render::connector`]).
//! * `GET /api/v1/connectors`: the same as JSON ([`api`]).
//!
//! * [`html`]: the templating and the one escaping function.
//! * [`timeline`]: the inline SVG of the last 24 hours.

pub mod html;
pub mod render;
pub mod timeline;

use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use serde_json::Value;

use super::Shared;
use super::health::read;
use crate::daemon::history::{Entry, Named};
use render::Context;

/// The headers of every answer: no script, style or image but the page's own inline ones;
/// no sniffing a type other than the one given; no copy of the state kept anywhere.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A request for the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    List,
    Connector(String),
    Api,
}

/// The page's routes; `None` for every other request (`/metrics`, `/healthz`, a POST).
pub fn route<B>(req: &Request<B>) -> Option<Route> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    let path = req.uri().path();
    match path {
        "/" => Some(Route::List),
        "/api/v1/connectors" => Some(Route::Api),
        _ => {
            let name = path.strip_prefix("/connector/")?;
            // An undecodable name is a connector that does not exist, not another route.
            Some(Route::Connector(
                html::decode_segment(name).unwrap_or_default(),
            ))
        }
    }
}

/// Answers a page request. Rendering grows with the fleet, so it runs off the async workers.
pub async fn serve(route: Route, shared: &Arc<Shared>) -> Response<Full<Bytes>> {
    let cx = Context {
        now: time::OffsetDateTime::now_utc().unix_timestamp(),
        message_expiration: i64::try_from(
            read(&shared.runtime).policy.message_expiration.as_secs(),
        )
        .unwrap_or(i64::MAX),
    };
    let shared = shared.clone();
    let rendered = tokio::task::spawn_blocking(move || match route {
        Route::List => (
            StatusCode::OK,
            "text/html; charset=utf-8",
            render::list(&mut shared.board.snapshot(), &cx),
        ),
        Route::Api => (
            StatusCode::OK,
            "application/json",
            api(&shared.board.snapshot(), &cx),
        ),
        Route::Connector(name) => match shared.board.get(&name) {
            Some(e) => (
                StatusCode::OK,
                "text/html; charset=utf-8",
                render::connector(&name, &e, &cx),
            ),
            None => (
                StatusCode::NOT_FOUND,
                "text/html; charset=utf-8",
                render::not_found(&name),
            ),
        },
    })
    .await;
    let (status, content_type, body) = rendered.unwrap_or_else(|_| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            "the page could not be rendered\n".into(),
        )
    });
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-security-policy", CSP)
        .header("x-content-type-options", "nosniff")
        .header("cache-control", "no-store")
        .header("referrer-policy", "no-referrer")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

/// `{"generated_at", "connectors": [...]}`, worst first as on the page. Each connector is
/// its `probe --json` object (whole while the connector is not ok; for an ok one, the fields
/// the page shows) and `state`: `failing_since`, `last_probe`, `ndr_at` and the `history`
/// of transitions.
pub fn api(entries: &[Named], cx: &Context) -> String {
    let mut sorted = entries.to_vec();
    render::order(&mut sorted);
    let connectors: Vec<ApiConnector<'_>> = sorted
        .iter()
        .map(|(name, e)| ApiConnector::new(name, e, cx))
        .collect();
    let doc = ApiDocument {
        generated_at: rfc3339(cx.now),
        connectors,
    };
    let mut text = serde_json::to_string(&doc).unwrap_or_default();
    text.push('\n');
    text
}

#[derive(Serialize)]
struct ApiDocument<'a> {
    generated_at: String,
    connectors: Vec<ApiConnector<'a>>,
}

#[derive(Serialize)]
struct ApiConnector<'a> {
    connector: &'a str,
    #[serde(flatten)]
    verdict: Verdict<'a>,
    state: ApiState<'a>,
}

/// The verdict's fields, beside `connector` and `state`.
#[derive(Serialize)]
#[serde(untagged)]
enum Verdict<'a> {
    /// The whole `probe --json` object of a connector that is not ok.
    Whole(serde_json::Map<String, Value>),
    Summary(&'a crate::daemon::history::Latest),
    NotProbed {
        status: Option<()>,
    },
}

#[derive(Serialize)]
struct ApiState<'a> {
    failing_since: Option<String>,
    last_probe: Option<String>,
    ndr_at: Option<String>,
    history: Vec<ApiTransition<'a>>,
}

#[derive(Serialize)]
struct ApiTransition<'a> {
    at: String,
    status: crate::verdict::Status,
    code: Option<&'a str>,
}

impl<'a> ApiConnector<'a> {
    fn new(name: &'a str, e: &'a Entry, cx: &Context) -> ApiConnector<'a> {
        let verdict = match &e.latest {
            Some(l) => match l
                .verdict_json()
                .and_then(|j| serde_json::from_str::<serde_json::Map<String, Value>>(j).ok())
            {
                Some(mut whole) => {
                    // `connector` is written once, first.
                    whole.remove("connector");
                    Verdict::Whole(whole)
                }
                None => Verdict::Summary(l),
            },
            None => Verdict::NotProbed { status: None },
        };
        let ndr_at = e
            .latest
            .as_ref()
            .filter(|l| l.queued)
            .and(e.failing_since)
            .map(|since| rfc3339(since.saturating_add(cx.message_expiration)));
        let history = e
            .history
            .iter()
            .map(|t| ApiTransition {
                at: rfc3339(t.at),
                status: t.status,
                code: t.code.as_deref(),
            })
            .collect();
        ApiConnector {
            connector: name,
            verdict,
            state: ApiState {
                failing_since: e.failing_since.map(rfc3339),
                last_probe: e.last_probe.map(rfc3339),
                ndr_at,
                history,
            },
        }
    }
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(crate::daemon::events::rfc3339)
        .unwrap_or_default()
}
