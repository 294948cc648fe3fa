//! The web chat (`/`) and the ops page (`/ops`), served by every node with the api role.
//!
//! The pages are built from `clients/js/web/` by `npm run build:web` and committed under
//! `crates/api/web/`, so building the binary needs no Node.js; CI rebuilds them and fails when
//! they differ from the committed files. Every answer carries an `ETag` (SHA-256 of the bytes,
//! so `If-None-Match` gets `304`), `Cache-Control: no-cache` (browsers revalidate, which is one
//! cheap `304` per file), and a Content-Security-Policy that allows only the page's own script
//! and style, `fetch` to this origin and WebSocket connections (the dispatcher may place the
//! client on another node).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::Digest;
use std::sync::OnceLock;
use switchboard_core::Error;
use switchboard_gateway::http_error::ApiError;

/// The policy every page and asset is served with: scripts and styles from this origin only,
/// no inline code, no frames, `fetch` to this origin and WebSocket to any node.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    /// The name under `/assets/` (pages have their own routes).
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../web/index.html"),
    },
    Asset {
        name: "ops.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../web/ops.html"),
    },
    Asset {
        name: "chat.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../web/chat.js"),
    },
    Asset {
        name: "ops.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../web/ops.js"),
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../web/style.css"),
    },
];

/// The ETag of every asset, in [`ASSETS`] order, computed once.
fn etags() -> &'static [HeaderValue] {
    static TAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let hash = sha2::Sha256::digest(a.bytes);
                let tag = format!("\"{}\"", hex::encode(&hash[..12]));
                HeaderValue::from_str(&tag).expect("hex is a valid header value")
            })
            .collect()
    })
}

/// The page routes (`/`, `/ops`) and `/assets/{name}`. None of them is under `/v1/`, so no API
/// route is shadowed.
pub fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|h: HeaderMap| async move { serve("index.html", &h) }),
        )
        .route(
            "/ops",
            get(|h: HeaderMap| async move { serve("ops.html", &h) }),
        )
        .route(
            "/assets/{name}",
            get(|Path(name): Path<String>, h: HeaderMap| async move { serve(&name, &h) }),
        )
}

/// Answers one asset: `304` when `If-None-Match` names its ETag, else the bytes.
fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return ApiError(Error::not_found("no such asset")).into_response();
    };
    let asset = &ASSETS[i];
    let etag = etags()[i].clone();
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let common = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        StatusCode::OK,
        common,
        [(header::CONTENT_TYPE, asset.content_type)],
        asset.bytes,
    )
        .into_response()
}
