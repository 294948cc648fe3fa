//! The router a node serves, called in-process with `tower::ServiceExt::oneshot`: no socket
//! and no listener, for request/response checks of the HTTP API.

use super::{API_KEY, JsonApi, test_config};
use axum::body::{Body, Bytes};
use axum::http::request::Builder;
use axum::http::{HeaderMap, Request};
use serde_json::Value;
use tower::ServiceExt;

/// What the in-process node advertises; nothing connects to it.
const PUBLIC_URL: &str = "http://in-process.test";

/// A node built as `switchboard_server::start` builds it (embedded backend in a tempdir, every
/// role, the test configuration), whose router is called directly.
pub struct InProcess {
    pub app: switchboard_server::App,
    pub dir: tempfile::TempDir,
}

impl InProcess {
    pub async fn start() -> InProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = test_config(dir.path());
        let app = switchboard_server::build(&config, PUBLIC_URL.into(), None)
            .await
            .expect("node builds");
        InProcess { app, dir }
    }

    /// A request to `path` with nothing added.
    pub fn raw(&self, method: &str, path: &str) -> Builder {
        Request::builder().method(method).uri(path)
    }

    /// Sends `req` with `body`; returns (status, headers, JSON body or Null). A body comes
    /// with its `content-length`, as from a client over a socket.
    pub async fn send(&self, mut req: Builder, body: impl Into<Bytes>) -> (u16, HeaderMap, Value) {
        let body = body.into();
        if !body.is_empty() {
            req = req.header("content-length", body.len());
        }
        let req = req.body(Body::from(body)).expect("a valid request");
        let resp = self
            .app
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("infallible");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("response body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, body)
    }

    /// Sends `req` with `body` as JSON.
    pub async fn send_json(&self, req: Builder, body: &Value) -> (u16, HeaderMap, Value) {
        let bytes = serde_json::to_vec(body).expect("JSON");
        self.send(req.header("content-type", "application/json"), bytes)
            .await
    }

    /// Closes the backend (its writer thread) before the data dir is removed.
    pub async fn stop(self) {
        self.app.node.backend.lifecycle.close().await;
    }
}

impl JsonApi for InProcess {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.raw(method, path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let (status, _, v) = match body {
            Some(b) => self.send_json(req, &b).await,
            None => self.send(req, Bytes::new()).await,
        };
        (status, v)
    }

    async fn server(&self, path: &str, body: Value) -> (u16, Value) {
        let req = self.raw("POST", path).header("x-api-key", API_KEY);
        let (status, _, v) = self.send_json(req, &body).await;
        (status, v)
    }
}
