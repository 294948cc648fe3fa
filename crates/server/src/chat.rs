//! `switchboard chat`: a terminal client for the README demo, built on the Rust SDK
//! (`switchboard-client`). It registers (or logs in), finds or creates a public room, shows its
//! recent history, then prints messages as they arrive and sends each typed line. The SDK
//! handles the rest: it asks the dispatcher where to connect, reconnects after failures or
//! `reconnect` frames, and resumes from the last seq shown, so nothing is missed or shown twice.

use clap::Args;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::ExitCode;
use switchboard_client::{Client, ClientConfig, Event, Message, TransportChoice};
use tokio::io::{AsyncBufReadExt, BufReader};

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
    /// Transport: auto (WebSocket, or long-polling if upgrades are refused), websocket,
    /// long-poll or tcp.
    #[arg(long, default_value = "auto")]
    pub transport: String,
    /// PEM CA certificates to trust besides the public ones (a node whose certificate a
    /// private CA signed), for HTTPS and every transport.
    #[arg(long, env = "SWITCHBOARD_CA", value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
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

/// The HTTP calls the SDK does not make: accounts, rooms, names.
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
        Ok((status, resp.json::<Value>().await.unwrap_or(Value::Null)))
    }

    /// A user's display name, cached.
    async fn name(&self, names: &mut HashMap<String, String>, user_id: &str) -> String {
        if let Some(n) = names.get(user_id) {
            return n.clone();
        }
        let name = match self
            .call(reqwest::Method::GET, &format!("/v1/users/{user_id}"), None)
            .await
        {
            Ok((200, u)) => u["username"].as_str().unwrap_or(user_id).to_owned(),
            _ => user_id.to_owned(),
        };
        names.insert(user_id.to_owned(), name.clone());
        name
    }
}

fn err_text(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or("unexpected answer")
        .to_owned()
}

fn transport(name: &str) -> Result<TransportChoice, String> {
    Ok(match name {
        "auto" => TransportChoice::Auto,
        "websocket" | "ws" => TransportChoice::WebSocket,
        "long-poll" | "poll" => TransportChoice::LongPoll,
        "tcp" => TransportChoice::Tcp,
        other => {
            return Err(format!(
                "unknown transport {other} (auto, websocket, long-poll, tcp)"
            ));
        }
    })
}

async fn chat(args: ChatArgs) -> Result<(), String> {
    let choice = transport(&args.transport)?;
    let mut http = reqwest::Client::builder();
    if let Some(ca) = &args.ca {
        let pem = std::fs::read(ca).map_err(|e| format!("--ca {}: {e}", ca.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string())? {
            http = http.add_root_certificate(cert);
        }
    }
    let mut api = Api {
        http: http.build().map_err(|e| e.to_string())?,
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
    let token = v["token"].as_str().unwrap_or_default().to_owned();
    let me = v["user_id"].as_str().unwrap_or_default().to_owned();
    api.token = Some(token.clone());

    let (_, rooms) = api.call(reqwest::Method::GET, "/v1/rooms", None).await?;
    let existing = rooms["rooms"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == args.room.as_str()).cloned());
    let room = match existing {
        Some(r) => r,
        None => {
            let body = json!({"name": args.room, "visibility": "public"});
            let (status, r) = api
                .call(reqwest::Method::POST, "/v1/rooms", Some(body))
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

    let mut config = ClientConfig::new(api.base.clone(), token);
    config.transport = choice;
    config.ca = args.ca.clone();
    let (client, mut events) = Client::connect(config)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let sub = client
        .subscribe(&conv)
        .await
        .map_err(|e| format!("cannot subscribe: {e}"))?;
    println!(
        "* {} joined #{} ({conv}); type to send, /quit to leave",
        args.user, args.room
    );

    // Recent history up to where the live subscription starts; later ones come as events.
    let mut names = HashMap::new();
    if sub.head_seq > 0 {
        let recent = client
            .history(&conv, None, Some(sub.head_seq + 1), Some(20))
            .await
            .unwrap_or_default();
        for m in &recent {
            print_message(&api, &mut names, m).await;
        }
    }

    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = stdin.next_line() => {
                let Ok(Some(line)) = line else { break };
                let text = line.trim();
                if text == "/quit" {
                    break;
                }
                if text.is_empty() {
                    continue;
                }
                // Resent with the same client_msg_id across reconnects: stored once.
                if let Err(e) = client.publish(&conv, json!({"text": text})).await {
                    eprintln!("* not sent: {e}");
                }
            }
            event = events.next() => {
                match event {
                    None => break,
                    Some(Event::Message(m)) if m.conv == conv => print_message(&api, &mut names, &m).await,
                    Some(Event::Message(m)) if m.to.is_some() => {
                        let from = match &m.from { Some(f) => api.name(&mut names, f).await, None => "server".into() };
                        println!("[dm] {from}: {}", text_of(&m));
                    }
                    Some(Event::Message(_)) => {}
                    Some(Event::Connected { node_id, transport }) => eprintln!("* connected to {node_id} over {transport}"),
                    Some(Event::Disconnected { reason }) => eprintln!("* disconnected ({reason}); reconnecting"),
                    Some(Event::Resumed { recovered: false, from_seq, .. }) => {
                        eprintln!("* some history was lost; continuing from #{from_seq}")
                    }
                    Some(Event::Unreadable { conv, seq, error }) => {
                        eprintln!("* message #{seq} of {conv} could not be read: {error}")
                    }
                    Some(Event::ServerDisconnect { reason }) => {
                        eprintln!("* the server closed the session: {reason}");
                        break;
                    }
                    Some(_) => {}
                }
            }
        }
    }
    client.close().await;
    Ok(())
}

fn text_of(m: &Message) -> String {
    match m.body["text"].as_str() {
        Some(t) => t.to_owned(),
        None => m.body.to_string(),
    }
}

async fn print_message(api: &Api, names: &mut HashMap<String, String>, m: &Message) {
    let from = match &m.from {
        Some(f) => api.name(names, f).await,
        None => "server".to_owned(),
    };
    println!("[{}] {from}: {}", m.seq, text_of(m));
}
