//! `switchboard chat`: a terminal client for the README demo. It registers (or logs in),
//! finds or creates a public room, shows its recent history, then prints messages as they
//! arrive and sends each typed line. On a dropped connection it goes back to the dispatcher
//! and resumes from the last seq it printed, so nothing is missed or shown twice.

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Flags of `switchboard chat`.
#[derive(Args, Debug)]
pub struct ChatArgs {
    /// Base URL of a node (its api and dispatcher roles).
    #[arg(
        long,
        default_value = "http://127.0.0.1:7700",
        env = "SWITCHBOARD_SERVER"
    )]
    pub server: String,
    /// Username (registered on first use).
    #[arg(long)]
    pub user: String,
    /// Password (8 bytes or more). Demo default; pass your own for anything real.
    #[arg(long, env = "SWITCHBOARD_PASSWORD", default_value = "switchboard-demo")]
    pub password: String,
    /// Room name to join (created as a public room if none has that name).
    #[arg(long, default_value = "lobby")]
    pub room: String,
}

/// Runs the chat until stdin closes or `/quit`.
pub async fn run(args: ChatArgs) -> ExitCode {
    match chat(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: {e}");
            ExitCode::from(1)
        }
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = resp.status().as_u16();
        let v = resp.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, v))
    }
}

fn err_text(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or("unexpected answer")
        .to_owned()
}

async fn chat(args: ChatArgs) -> Result<(), String> {
    let mut api = Api {
        http: reqwest::Client::new(),
        base: args.server.trim_end_matches('/').to_owned(),
        token: None,
    };
    let creds = json!({"username": args.user, "password": args.password});
    let (status, v) = api
        .call(reqwest::Method::POST, "/v1/users", Some(creds.clone()))
        .await?;
    if status != 201 && status != 409 {
        return Err(format!("registration failed: {}", err_text(&v)));
    }
    let (status, v) = api
        .call(reqwest::Method::POST, "/v1/sessions", Some(creds))
        .await?;
    if status != 201 {
        return Err(format!("login failed: {}", err_text(&v)));
    }
    api.token = v["token"].as_str().map(str::to_owned);
    let me = v["user_id"].as_str().unwrap_or_default().to_owned();

    let (_, rooms) = api.call(reqwest::Method::GET, "/v1/rooms", None).await?;
    let existing = rooms["rooms"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == args.room.as_str()).cloned());
    let room = match existing {
        Some(r) => r,
        None => {
            let (status, r) = api
                .call(
                    reqwest::Method::POST,
                    "/v1/rooms",
                    Some(json!({"name": args.room, "visibility": "public"})),
                )
                .await?;
            if status != 201 {
                return Err(format!("cannot create room: {}", err_text(&r)));
            }
            r
        }
    };
    let room_id = room["room_id"].as_str().unwrap_or_default().to_owned();
    let (status, v) = api
        .call(
            reqwest::Method::PUT,
            &format!("/v1/rooms/{room_id}/members/{me}"),
            None,
        )
        .await?;
    if status != 204 {
        return Err(format!("cannot join: {}", err_text(&v)));
    }
    let conv = format!("room:{room_id}");
    println!(
        "* {} joined #{} ({conv}); type to send, /quit to leave",
        args.user, args.room
    );

    let mut names: HashMap<String, String> = HashMap::new();
    let mut last_seq = 0u64;
    let (_, hist) = api
        .call(
            reqwest::Method::GET,
            &format!("/v1/rooms/{room_id}/messages?limit=20"),
            None,
        )
        .await?;
    for m in hist["messages"].as_array().cloned().unwrap_or_default() {
        print_message(&api, &mut names, &m).await;
        last_seq = last_seq.max(m["seq"].as_u64().unwrap_or(0));
    }

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut backoff = Duration::from_millis(250);
    let mut next_id = 1u64;
    loop {
        let ws_url = match api.call(reqwest::Method::GET, "/v1/dispatch", None).await {
            Ok((200, d)) => d["endpoints"]["ws"].as_str().map(str::to_owned),
            _ => None,
        };
        let Some(ws_url) = ws_url else {
            eprintln!("* no node available; retrying in {backoff:?}");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
            continue;
        };
        let url = format!("{ws_url}?token={}", api.token.clone().unwrap_or_default());
        let mut ws = match tokio_tungstenite::connect_async(&url).await {
            Ok((ws, _)) => ws,
            Err(e) => {
                eprintln!("* cannot connect ({e}); retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(250);
        let sub = json!({"type": "subscribe", "id": 0, "conv": conv, "since": last_seq});
        if ws.send(WsMessage::text(sub.to_string())).await.is_err() {
            continue;
        }
        loop {
            tokio::select! {
                line = stdin.next_line() => {
                    let Ok(Some(line)) = line else { return Ok(()) };
                    let text = line.trim();
                    if text == "/quit" {
                        let _ = ws.close(None).await;
                        return Ok(());
                    }
                    if text.is_empty() {
                        continue;
                    }
                    next_id += 1;
                    let frame = json!({"type": "publish", "id": next_id, "conv": conv, "body": {"text": text},
                                       "client_msg_id": format!("{me}-{}-{next_id}", std::process::id())});
                    if ws.send(WsMessage::text(frame.to_string())).await.is_err() {
                        eprintln!("* connection lost; the line was not sent");
                        break;
                    }
                }
                msg = ws.next() => {
                    let Some(Ok(msg)) = msg else {
                        eprintln!("* disconnected; reconnecting");
                        break;
                    };
                    let WsMessage::Text(t) = msg else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(&t) else { continue };
                    match v["type"].as_str() {
                        Some("message") if v["conv"] == conv.as_str() => {
                            let seq = v["seq"].as_u64().unwrap_or(0);
                            if seq > last_seq {
                                last_seq = seq;
                                print_message(&api, &mut names, &v).await;
                            }
                        }
                        Some("error") => eprintln!("* error: {} ({})", v["message"].as_str().unwrap_or(""), v["code"].as_str().unwrap_or("")),
                        Some("disconnect") => eprintln!("* server closed the connection: {}", v["reason"].as_str().unwrap_or("")),
                        Some("reconnect") => {
                            let delay = v["delay_ms"].as_u64().unwrap_or(0).min(30_000);
                            eprintln!("* server asks to reconnect in {delay} ms");
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                            break;
                        }
                        _ => {}
                    }
                }
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

async fn print_message(api: &Api, names: &mut HashMap<String, String>, m: &Value) {
    let from = m["from"].as_str().unwrap_or("server").to_owned();
    if !names.contains_key(&from) {
        let name = match api
            .call(reqwest::Method::GET, &format!("/v1/users/{from}"), None)
            .await
        {
            Ok((200, u)) => u["username"].as_str().unwrap_or(&from).to_owned(),
            _ => from.clone(),
        };
        names.insert(from.clone(), name);
    }
    let text = match m["body"]["text"].as_str() {
        Some(t) => t.to_owned(),
        None => m["body"].to_string(),
    };
    println!("[{}] {}: {}", m["seq"], names[&from], text);
}
