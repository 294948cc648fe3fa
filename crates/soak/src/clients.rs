//! The soak's SDK clients: each connects over its transport (WebSocket, long-poll and TCP in
//! turn), subscribes to its rooms, and a task of its own reads its events into its [`Ledger`]
//! and its [`Seen`] (reconnect times, resumes that lost messages, ended subscriptions).

use crate::ledger::Ledger;
use crate::setup::User;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use switchboard_client::{Client, ClientConfig, Event, TransportChoice};

/// What a client saw besides messages.
#[derive(Debug, Default)]
pub struct Seen {
    /// Each reconnect's time, from the `Disconnected` event to the next `Connected`, in ms.
    pub reconnects_ms: Vec<u64>,
    /// `Resumed { recovered: false }`: messages skipped by the server (history gone).
    pub unrecovered: u64,
    /// Subscriptions the server ended (`Unsubscribed`).
    pub unsubscribed: u64,
    /// The server ended the session (`ServerDisconnect`) or the event stream ended.
    pub ended: Option<String>,
    /// The last `Disconnected` reason and the last node connected to, for a lost report.
    pub last_reason: Option<String>,
    /// The node of the last `Connected`.
    pub last_node: Option<String>,
}

/// One running soak client.
pub struct SoakClient {
    /// The SDK handle (for publishing).
    pub client: Client,
    /// Its user.
    pub user: User,
    /// `room:<id>` of each of its rooms.
    pub rooms: Vec<String>,
    /// What its application was handed.
    pub ledger: Arc<Mutex<Ledger>>,
    /// What else it saw.
    pub seen: Arc<Mutex<Seen>>,
}

/// Locks a mutex, whether or not a holder panicked (the data is counters).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The transport of client `i`: WebSocket, long-poll and TCP in turn.
pub fn transport_of(i: usize) -> TransportChoice {
    match i % 3 {
        0 => TransportChoice::WebSocket,
        1 => TransportChoice::LongPoll,
        _ => TransportChoice::Tcp,
    }
}

/// Connects client `i` through `dispatcher`, tracks its own stream, subscribes to `rooms`,
/// and starts its event reader.
pub async fn start(
    i: usize,
    dispatcher: &str,
    user: User,
    rooms: Vec<String>,
) -> Result<SoakClient, String> {
    let mut config = ClientConfig::new(dispatcher, user.token.clone());
    config.transport = transport_of(i);
    let (client, mut events) = Client::connect(config)
        .await
        .map_err(|e| format!("client {i} connect: {e}"))?;
    let own = format!("user:{}", user.user_id);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    // A fresh user's stream is empty: the SDK tracks it from its head (0) on.
    lock(&ledger).track(&own, 0);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (l, s) = (ledger.clone(), seen.clone());
    tokio::spawn(async move {
        let mut down_at: Option<Instant> = None;
        loop {
            let Some(event) = events.next().await else {
                lock(&s)
                    .ended
                    .get_or_insert_with(|| "event stream ended".into());
                return;
            };
            match event {
                Event::Message(m) => lock(&l).record(&m.conv, m.seq),
                Event::Unreadable { conv, seq, .. } => lock(&l).record(&conv, seq),
                Event::Disconnected { reason } => {
                    down_at.get_or_insert_with(Instant::now);
                    lock(&s).last_reason = Some(reason);
                }
                Event::Connected { node_id, .. } => {
                    let mut seen = lock(&s);
                    seen.last_node = Some(node_id);
                    if let Some(at) = down_at.take() {
                        seen.reconnects_ms.push(at.elapsed().as_millis() as u64);
                    }
                }
                Event::Resumed { recovered, .. } => {
                    if !recovered {
                        lock(&s).unrecovered += 1;
                    }
                }
                Event::Unsubscribed { conv, reason } => {
                    eprintln!("soak: client {i} unsubscribed from {conv}: {reason}");
                    lock(&s).unsubscribed += 1;
                }
                Event::ServerDisconnect { reason } => {
                    eprintln!("soak: client {i} signed out: {reason}");
                    lock(&s).ended = Some(reason);
                }
            }
        }
    });
    for room in &rooms {
        let sub = subscribe(&client, room)
            .await
            .map_err(|e| format!("client {i} subscribe {room}: {e}"))?;
        lock(&ledger).track(room, sub);
    }
    Ok(SoakClient {
        client,
        user,
        rooms,
        ledger,
        seen,
    })
}

/// Subscribes, retrying a few times (a request can time out while the cluster is busy);
/// the head seq.
async fn subscribe(client: &Client, room: &str) -> Result<u64, String> {
    let mut last = String::new();
    for _ in 0..5 {
        match client.subscribe(room).await {
            Ok(s) => return Ok(s.head_seq),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}
