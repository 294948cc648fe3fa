//! Memory per idle TLS connection (WSS and TLS TCP), against plain WebSocket in the same
//! process, with a CA made at test time.

use crate::common::tls::{https_client, server_token, tls_connector};
use crate::common::*;
use crate::proc_rss_kib;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message as WsMessage;

async fn tls(
    c: &TlsConnector,
    addr: std::net::SocketAddr,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    c.connect(name, tcp).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn rss_per_idle_tls_connection() {
    const N: usize = 2_000;
    let ca = switchboard_testkit::TestCa::new("measure CA");
    let files = ca.issue("node", "node");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (
        files.cert.display().to_string(),
        files.key.display().to_string(),
    );
    let proc = NodeProcess::start(
        dir.path(),
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tcp-listen",
            "127.0.0.1:0",
            "--heartbeat-ms",
            "25000",
            "--max-connections-per-ip",
            "0",
        ],
    )
    .await;
    let pid = proc.child.id().unwrap();
    let http = https_client(ca.ca_path());
    let base = format!("https://{}", proc.addr);
    let token = server_token(&http, &base, "idle").await;
    let node: serde_json::Value = http
        .get(format!("{base}/v1/node"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tcp_addr: std::net::SocketAddr = node["endpoints"]["tcp"]
        .as_str()
        .unwrap()
        .trim_start_matches("tls://")
        .parse()
        .unwrap();
    let c = tls_connector(ca.ca_path());
    // WSS
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r0 = proc_rss_kib(pid);
    let mut wss = Vec::with_capacity(N);
    for _ in 0..N {
        let stream = tls(&c, proc.addr).await;
        let url = format!("wss://localhost/v1/ws?token={token}");
        let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
        match ws.next().await {
            Some(Ok(WsMessage::Text(t))) => assert!(t.contains("welcome"), "{t}"),
            other => panic!("no welcome: {other:?}"),
        }
        wss.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r1 = proc_rss_kib(pid);
    // TLS TCP
    let mut tcp = Vec::with_capacity(N);
    let auth = format!(r#"{{"type":"auth","token":"{token}"}}"#);
    for _ in 0..N {
        let mut s = tls(&c, tcp_addr).await;
        s.write_all(&(auth.len() as u32).to_be_bytes())
            .await
            .unwrap();
        s.write_all(auth.as_bytes()).await.unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).await.unwrap();
        let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut frame).await.unwrap();
        assert!(String::from_utf8_lossy(&frame).contains("welcome"));
        tcp.push(s);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r2 = proc_rss_kib(pid);
    let per = |a: u64, b: u64| (b - a) as f64 * 1024.0 / N as f64;
    println!(
        "idle TLS connections: {N} WSS: RSS {r0} -> {r1} KiB, {:.0} bytes each; {N} TLS TCP: -> {r2} KiB, {:.0} bytes each",
        per(r0, r1),
        per(r1, r2)
    );
    // Every connection measured is alive and served.
    for (i, ws) in wss.iter_mut().enumerate().step_by(97) {
        ws.send(WsMessage::text(r#"{"type":"ping","id":1}"#))
            .await
            .unwrap();
        match ws.next().await {
            Some(Ok(WsMessage::Text(t))) => assert!(t.contains("pong"), "{i}: {t}"),
            other => panic!("{i}: {other:?}"),
        }
    }
}
