//! JSON requests to a node's HTTP API: the [`JsonApi`] helpers (register, log in, rooms,
//! publish) and [`Http`], which sends them over a real socket.

use super::{API_KEY, PASSWORD};
use serde_json::{Value, json};
use std::net::SocketAddr;

/// A tiny JSON-over-HTTP client bound to one node.
#[derive(Clone)]
pub struct Http {
    pub base: String,
    pub client: reqwest::Client,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Http {
        Http {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
        }
    }
}

impl JsonApi for Http {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("HTTP request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn server(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .header("x-api-key", API_KEY)
            .json(&body)
            .send()
            .await
            .expect("HTTP request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// JSON requests to one node's HTTP API, over a socket ([`Http`]) or in-process
/// ([`InProcess`]); the provided methods build on `call` and `server`.
#[allow(async_fn_in_trait)]
pub trait JsonApi {
    /// Sends a request; returns (status, JSON body or Null).
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value);

    /// Server API call with the test key.
    async fn server(&self, path: &str, body: Value) -> (u16, Value);

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call("GET", path, Some(token), None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(token), Some(body)).await
    }

    async fn user(&self, name: &str) -> (String, String) {
        let creds = json!({"username": name, "password": PASSWORD});
        let (s, v) = self
            .call("POST", "/v1/users", None, Some(creds.clone()))
            .await;
        assert!(s == 201 || s == 409, "register {name}: {s} {v}");
        let (s, v) = self.call("POST", "/v1/sessions", None, Some(creds)).await;
        assert_eq!(s, 201, "login {name}: {v}");
        (
            v["user_id"].as_str().unwrap().to_owned(),
            v["token"].as_str().unwrap().to_owned(),
        )
    }

    /// Creates a room owned by the token's user; returns its id.
    async fn room(&self, token: &str, name: &str, visibility: &str) -> String {
        let (s, v) = self
            .post(
                "/v1/rooms",
                token,
                json!({"name": name, "visibility": visibility}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["room_id"].as_str().unwrap().to_owned()
    }

    /// Publishes a room message over HTTP; returns its seq.
    async fn publish(&self, token: &str, room: &str, body: Value) -> u64 {
        let (s, v) = self
            .post(
                &format!("/v1/rooms/{room}/messages"),
                token,
                json!({"body": body}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["seq"].as_u64().unwrap()
    }
}
