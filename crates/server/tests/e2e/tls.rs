//! TLS termination (issue 17 part 2), from outside, with a CA and certificates made at test
//! time: the HTTPS API and the endpoints it advertises, the SDK over WSS, HTTPS long-polling
//! and TLS TCP with `ca` (fan-out included, with bursts and large messages that fill the
//! socket), plain HTTP and TCP to the TLS ports, and SIGHUP reloading the certificate.

use crate::common::tls::{https_client, server_token, tls_connector};
use crate::common::{JsonApi, NodeProcess, TestNode, WAIT, eventually};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use switchboard_client::{Client, ClientConfig, Event, Events, TransportChoice};
use switchboard_testkit::{CertFiles, TestCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn tls_node(files: &CertFiles) -> TestNode {
    let (cert, key) = (files.cert.clone(), files.key.clone());
    TestNode::start_with(move |c| c.tls = Some((cert, key))).await
}

async fn sdk(base: &str, token: &str, t: TransportChoice, ca: &Path) -> (Client, Events) {
    let mut c = ClientConfig::new(base, token);
    c.transport = t;
    c.ca = Some(ca.to_owned());
    Client::connect(c).await.expect("connects over TLS")
}

async fn next_message(events: &mut Events) -> switchboard_client::Message {
    loop {
        let e = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("a message in time")
            .expect("events go on");
        if let Event::Message(m) = e {
            return m;
        }
    }
}

#[tokio::test]
async fn https_api_and_the_sdk_over_wss_https_poll_and_tls_tcp() {
    let ca = TestCa::new("switchboard test CA");
    let files = ca.issue("node", "node");
    let node = tls_node(&files).await;
    let base = format!("https://{}", node.addr);
    let http = https_client(ca.ca_path());
    let info: Value = http
        .get(format!("{base}/v1/node"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ep = &info["endpoints"];
    assert_eq!(ep["ws"], format!("wss://{}/v1/ws", node.addr));
    assert_eq!(ep["poll"], format!("https://{}/v1/poll", node.addr));
    assert_eq!(ep["tcp"], format!("tls://{}", node.tcp_addr()));
    // Without the CA the certificate is not trusted.
    assert!(reqwest::get(format!("{base}/v1/node")).await.is_err());

    let big = "x".repeat(50_000);
    for (i, t) in [
        TransportChoice::WebSocket,
        TransportChoice::LongPoll,
        TransportChoice::Tcp,
    ]
    .into_iter()
    .enumerate()
    {
        let (alice, bob) = (format!("alice{i}"), format!("bob{i}"));
        let (ta, tb) = (
            server_token(&http, &base, &alice).await,
            server_token(&http, &base, &bob).await,
        );
        let (_a, mut a_events) = sdk(&base, &ta, t, ca.ca_path()).await;
        let (b, _b_events) = sdk(&base, &tb, t, ca.ca_path()).await;
        let conv = format!("user:{alice}");
        // A burst with large messages: the fan-out's TLS writes fill the socket.
        for n in 0..40 {
            let body = if n % 10 == 9 {
                json!({"n": n, "pad": big})
            } else {
                json!({"n": n})
            };
            b.publish(&conv, body).await.expect("published");
        }
        for n in 0..40 {
            let m = next_message(&mut a_events).await;
            assert_eq!(m.body["n"], n, "{t:?}: in order, none lost");
        }
    }
}

/// Reads what a TLS port answers to plain bytes within a second (it may close, or send a TLS
/// alert; it never answers in the plain protocol).
async fn answer_to_plain(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut got)).await;
    got
}

#[tokio::test]
async fn plain_http_and_tcp_on_tls_ports_get_no_normal_answer() {
    let ca = TestCa::new("switchboard test CA");
    let node = tls_node(&ca.issue("node", "node")).await;
    let got = answer_to_plain(node.addr, b"GET /v1/node HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        !got.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    let frame = br#"{"type":"ping","id":1}"#;
    let mut bytes = (frame.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(frame);
    let got = answer_to_plain(node.tcp_addr(), &bytes).await;
    let text = String::from_utf8_lossy(&got);
    assert!(!text.contains("\"type\""), "{text}");
}

/// A TLS connection to `addr` trusting `ca`; returns it and the certificate it was served.
async fn handshake(
    addr: std::net::SocketAddr,
    ca: &Path,
) -> (
    tokio_rustls::client::TlsStream<TcpStream>,
    CertificateDer<'static>,
) {
    let connector = tls_connector(ca);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.expect("handshake");
    let served = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    (tls, served.into_owned())
}

/// One keep-alive request on an open connection; returns the status line.
async fn get(tls: &mut tokio_rustls::client::TlsStream<TcpStream>) -> String {
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, tls.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "closed");
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn sighup_reloads_the_certificate_for_new_handshakes_and_keeps_open_connections() {
    let ca = TestCa::new("switchboard test CA");
    let first = ca.issue("node", "first");
    let first_der = CertificateDer::from_pem_file(&first.cert).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (
        first.cert.display().to_string(),
        first.key.display().to_string(),
    );
    let node = NodeProcess::start(dir.path(), &["--tls-cert", &cert, "--tls-key", &key]).await;
    let (mut old, served) = handshake(node.addr, ca.ca_path()).await;
    assert_eq!(served, first_der);
    assert!(get(&mut old).await.contains("200"));
    // New files in the same place, then SIGHUP.
    let second = ca.issue("node", "second");
    let second_der = CertificateDer::from_pem_file(&second.cert).unwrap();
    assert_ne!(first_der, second_der);
    node.signal("HUP");
    eventually(|| async {
        let served = handshake(node.addr, ca.ca_path()).await.1;
        (served == second_der)
            .then_some(())
            .ok_or_else(|| "still the first certificate".to_owned())
    })
    .await;
    // The connection made before the reload still works.
    assert!(get(&mut old).await.contains("200"));
}

/// A dispatcher-only node probing a TLS gateway: with `--ca` it trusts the private CA and hands
/// the gateway's `wss://` endpoint out; without, the gateway is never placed.
#[tokio::test]
async fn a_dispatcher_probes_tls_gateways_through_its_ca() {
    use switchboard_server::config::Roles;
    let ca = TestCa::new("switchboard test CA");
    let gateway = tls_node(&ca.issue("node", "node")).await;
    let gateway_url = format!("https://{}", gateway.addr);
    let dispatcher = |ca: Option<std::path::PathBuf>| {
        let gateways = vec![gateway_url.clone()];
        TestNode::start_with(move |c| {
            c.roles = Roles {
                gateway: false,
                api: false,
                dispatcher: true,
            };
            c.gateways = gateways;
            c.probe_interval = Duration::from_millis(50);
            c.ca = ca;
        })
    };
    let trusting = dispatcher(Some(ca.ca_path().to_owned())).await;
    eventually(|| async {
        let (status, v) = trusting.http.call("GET", "/v1/dispatch", None, None).await;
        let ws = v["endpoints"]["ws"].as_str().unwrap_or_default().to_owned();
        (status == 200 && ws == format!("wss://{}/v1/ws", gateway.addr))
            .then_some(())
            .ok_or(format!("{status} {v}"))
    })
    .await;
    let untrusting = dispatcher(None).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, v) = untrusting
        .http
        .call("GET", "/v1/dispatch", None, None)
        .await;
    assert_eq!(status, 503, "{v}");
}

/// A missing file or a key that does not match its certificate stops the start with a clear
/// error naming the file.
#[tokio::test]
async fn bad_tls_files_are_refused_at_start() {
    let ca = TestCa::new("switchboard test CA");
    let (one, two) = (ca.issue("one", "one"), ca.issue("two", "two"));
    let dir = tempfile::tempdir().unwrap();
    for (cert, key, says) in [
        (dir.path().join("none.pem"), one.key.clone(), "--tls-cert"),
        (one.cert.clone(), two.key.clone(), "does not match"),
        (one.key.clone(), one.key.clone(), "no certificate"),
    ] {
        let mut c = crate::common::test_config(dir.path());
        c.tls = Some((cert, key));
        let e = switchboard_server::start(c).await.err().expect("refused");
        assert!(e.to_string().contains(says), "{e}");
    }
    let mut c = crate::common::test_config(dir.path());
    c.ca = Some(dir.path().join("no-ca.pem"));
    let e = switchboard_server::start(c).await.err().expect("refused");
    assert!(e.to_string().contains("--ca"), "{e}");
}
