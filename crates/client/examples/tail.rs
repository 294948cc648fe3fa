//! Prints a room's messages as they arrive, reconnecting by itself.
//!
//! ```sh
//! # a running node: cargo run --bin switchboard -- serve
//! B=http://127.0.0.1:7700
//! curl -s -X POST $B/v1/users -d '{"username":"alice","password":"secret-pass"}'
//! T=$(curl -s -X POST $B/v1/sessions -d '{"username":"alice","password":"secret-pass"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
//! R=$(curl -s -X POST $B/v1/rooms -H "Authorization: Bearer $T" -d '{"name":"lobby"}' | sed 's/.*"room_id":"\([^"]*\)".*/\1/')
//! cargo run -p switchboard-client --example tail -- $B $T room:$R [auto|ws|poll|tcp]
//! ```
//!
//! Then publish from another terminal:
//! `curl -s -X POST $B/v1/rooms/$R/messages -H "Authorization: Bearer $T" -d '{"body":{"text":"hi"}}'`

use switchboard_client::{Client, ClientConfig, Event, TransportChoice};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dispatcher, token, conv, rest @ ..] = args.as_slice() else {
        eprintln!("usage: tail <dispatcher-url> <token> <room:ID> [auto|ws|poll|tcp]");
        std::process::exit(2);
    };
    let mut config = ClientConfig::new(dispatcher.as_str(), token.as_str());
    config.transport = match rest.first().map(String::as_str) {
        None | Some("auto") => TransportChoice::Auto,
        Some("ws") => TransportChoice::WebSocket,
        Some("poll") => TransportChoice::LongPoll,
        Some("tcp") => TransportChoice::Tcp,
        Some(other) => {
            eprintln!("unknown transport {other:?} (auto, ws, poll, tcp)");
            std::process::exit(2);
        }
    };
    let (client, mut events) = match Client::connect(config).await {
        Ok(x) => x,
        Err(e) => {
            eprintln!("cannot connect: {e}");
            std::process::exit(1);
        }
    };
    match client.subscribe(conv).await {
        Ok(s) => eprintln!("tailing {} from seq {}", s.conv, s.head_seq + 1),
        Err(e) => {
            eprintln!("cannot subscribe to {conv}: {e}");
            std::process::exit(1);
        }
    }
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            event = events.next() => match event {
                None => break,
                Some(Event::Message(m)) => {
                    let from = m.from.as_deref().unwrap_or("server");
                    println!("{} #{} {from}: {}", m.conv, m.seq, m.body);
                }
                Some(Event::Connected { node_id, transport }) => {
                    eprintln!("connected to {node_id} over {transport}");
                }
                Some(Event::Disconnected { reason }) => eprintln!("disconnected ({reason}); reconnecting"),
                Some(Event::Resumed { conv, recovered: false, from_seq }) => {
                    eprintln!("{conv}: some messages were lost; going on from seq {from_seq}");
                }
                Some(Event::ServerDisconnect { reason }) => {
                    eprintln!("the server ended the session: {reason}");
                    break;
                }
                Some(_) => {}
            }
        }
    }
    client.close().await;
}
