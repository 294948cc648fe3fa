//! One client type over any transport ([`Kind`]), so a scenario is written once and run over
//! WebSocket, TCP and long-poll.

use super::{Client, PollClient, TcpClient, TestNode, WsClient};
use serde_json::{Value, json};
use std::time::Duration;

/// The transports a scenario can run over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ws,
    Tcp,
    Poll,
}

/// A client of any transport.
#[allow(clippy::large_enum_variant)] // test clients; size does not matter
pub enum AnyClient {
    Ws(WsClient),
    Tcp(TcpClient),
    Poll(PollClient),
}

impl Client for AnyClient {
    async fn send(&mut self, frame: Value) {
        match self {
            AnyClient::Ws(c) => c.send(frame).await,
            AnyClient::Tcp(c) => c.send(frame).await,
            AnyClient::Poll(c) => c.send(frame).await,
        }
    }
    async fn send_raw(&mut self, text: &str) {
        match self {
            AnyClient::Ws(c) => c.send_raw(text).await,
            AnyClient::Tcp(c) => c.send_raw(text).await,
            AnyClient::Poll(c) => c.send_raw(text).await,
        }
    }
    async fn next_within(&mut self, d: Duration) -> Result<Option<Value>, ()> {
        match self {
            AnyClient::Ws(c) => c.next_within(d).await,
            AnyClient::Tcp(c) => c.next_within(d).await,
            AnyClient::Poll(c) => c.next_within(d).await,
        }
    }
}

impl TestNode {
    /// Opens an unauthenticated connection over `kind` (WebSocket or TCP: long-poll sessions
    /// are authenticated when opened).
    pub async fn open(&self, kind: Kind) -> AnyClient {
        match kind {
            Kind::Ws => AnyClient::Ws(WsClient::connect(&self.ws_url()).await),
            Kind::Tcp => AnyClient::Tcp(TcpClient::connect(self.tcp_addr()).await),
            Kind::Poll => panic!("long-poll sessions open with a token: use connect_over"),
        }
    }

    /// Connects over `kind` and authenticates (an `auth` frame, or the token that opens a
    /// long-poll session); returns the client and the `welcome` frame.
    pub async fn connect_with_welcome(&self, kind: Kind, token: &str) -> (AnyClient, Value) {
        if kind == Kind::Poll {
            let p = PollClient::open(&self.http, token, None)
                .await
                .expect("poll session opens");
            let mut c = AnyClient::Poll(p);
            let w = c.expect("welcome").await;
            return (c, w);
        }
        let mut c = self.open(kind).await;
        c.send(json!({"type": "auth", "id": "auth", "token": token}))
            .await;
        let w = c.expect("welcome").await;
        assert_eq!(w["id"], "auth");
        (c, w)
    }

    /// Connects over `kind` and authenticates.
    pub async fn connect_over(&self, kind: Kind, token: &str) -> AnyClient {
        self.connect_with_welcome(kind, token).await.0
    }
}
