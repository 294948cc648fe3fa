//! The SDK tests' network fixtures: an HTTP proxy that refuses WebSocket upgrades (and can hold
//! the dispatcher or rewrite addresses), and a TCP proxy that can go silent or cut its
//! connections, as a network failure would.

use super::*;

// ----- a proxy: refuses WebSocket upgrades, can hold the dispatcher -----

pub(super) struct ProxyState {
    node: SocketAddr,
    /// Text replaced in every answer: the node's address by the proxy's, and more.
    rewrites: Vec<(String, String)>,
    http: reqwest::Client,
    pub(super) refused_upgrades: AtomicUsize,
    pub(super) block_dispatch: AtomicBool,
}

pub(super) struct Proxy {
    pub(super) addr: SocketAddr,
    pub(super) state: Arc<ProxyState>,
}

/// An HTTP proxy on 127.0.0.1:0 in front of `node`: answers 403 to any request with an
/// `Upgrade` header, forwards everything else, and rewrites the node's address in answers to
/// its own (so the dispatcher's endpoints and poll URLs lead back through it). With
/// `block_dispatch` set, `/v1/dispatch` answers `503 overloaded` with `Retry-After: 1`.
pub(super) async fn start_proxy(node: SocketAddr) -> Proxy {
    start_proxy_with(node, Vec::new()).await
}

/// [`start_proxy`], also replacing each `(from, to)` text in answers.
pub(super) async fn start_proxy_with(
    node: SocketAddr,
    mut rewrites: Vec<(String, String)>,
) -> Proxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    rewrites.push((node.to_string(), addr.to_string()));
    let state = Arc::new(ProxyState {
        node,
        rewrites,
        http: reqwest::Client::new(),
        refused_upgrades: AtomicUsize::new(0),
        block_dispatch: AtomicBool::new(false),
    });
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Proxy { addr, state }
}

async fn forward(
    axum::extract::State(s): axum::extract::State<Arc<ProxyState>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    if req.headers().contains_key(header::UPGRADE) {
        s.refused_upgrades.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::FORBIDDEN, "this proxy does not do WebSocket").into_response();
    }
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    if path.starts_with("/v1/dispatch") && s.block_dispatch.load(Ordering::SeqCst) {
        let body = json!({"error": {"code": "overloaded", "message": "held by the test"}});
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            axum::Json(body),
        )
            .into_response();
    }
    let method = req.method().clone();
    let mut headers = req.headers().clone();
    for h in [
        header::HOST,
        header::CONTENT_LENGTH,
        header::CONNECTION,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(h);
    }
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let resp = s
        .http
        .request(method, format!("http://{}{path}", s.node))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = resp.status();
    let mut out_headers = axum::http::HeaderMap::new();
    for h in [header::CONTENT_TYPE, header::RETRY_AFTER] {
        if let Some(v) = resp.headers().get(&h) {
            out_headers.insert(h, v.clone());
        }
    }
    let text = resp.text().await.unwrap_or_default();
    let text = s
        .rewrites
        .iter()
        .fold(text, |t, (from, to)| t.replace(from.as_str(), to.as_str()));
    (status, out_headers, text).into_response()
}

// ----- a TCP proxy that can go silent or cut its connections -----

struct ConnCtl {
    mute: AtomicBool,
    cancel: tokio_util::sync::CancellationToken,
}

/// Forwards TCP connections to `target`. `mute_all` makes the connections open now drop
/// everything the node sends (and hide the node closing them): a black hole, as after a
/// network failure. `cut_all` closes them. New connections are not affected.
pub(super) struct TcpProxy {
    pub(super) addr: SocketAddr,
    conns: Arc<std::sync::Mutex<Vec<Arc<ConnCtl>>>>,
    pub(super) accepted: Arc<AtomicUsize>,
}

impl TcpProxy {
    pub(super) async fn start(target: SocketAddr) -> TcpProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<std::sync::Mutex<Vec<Arc<ConnCtl>>>> = Arc::default();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (list, count) = (conns.clone(), accepted.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let ctl = Arc::new(ConnCtl {
                    mute: AtomicBool::new(false),
                    cancel: tokio_util::sync::CancellationToken::new(),
                });
                list.lock().unwrap().push(ctl.clone());
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = ctl.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        tokio::select! {
                            _ = up.cancel.cancelled() => break,
                            n = cr.read(&mut buf) => match n {
                                Ok(0) | Err(_) => break,
                                Ok(n) => if sw.write_all(&buf[..n]).await.is_err() { break },
                            },
                        }
                    }
                });
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        tokio::select! {
                            _ = ctl.cancel.cancelled() => break,
                            n = sr.read(&mut buf) => match n {
                                Ok(0) | Err(_) => {
                                    if ctl.mute.load(Ordering::SeqCst) {
                                        ctl.cancel.cancelled().await;
                                    }
                                    break;
                                }
                                Ok(n) => {
                                    if ctl.mute.load(Ordering::SeqCst) {
                                        continue;
                                    }
                                    if cw.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            },
                        }
                    }
                });
            }
        });
        TcpProxy {
            addr,
            conns,
            accepted,
        }
    }

    pub(super) fn mute_all(&self) {
        for c in self.conns.lock().unwrap().iter() {
            c.mute.store(true, Ordering::SeqCst);
        }
    }

    pub(super) fn cut_all(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.cancel.cancel();
        }
    }
}

/// A node reached through both proxies: dispatch over HTTP through `Proxy`, which points the
/// TCP endpoint at the `TcpProxy`.
pub(super) async fn behind_proxies(node: &TestNode) -> (Proxy, TcpProxy) {
    let tcp = TcpProxy::start(node.tcp_addr()).await;
    let http = start_proxy_with(
        node.addr,
        vec![(node.tcp_addr().to_string(), tcp.addr.to_string())],
    )
    .await;
    (http, tcp)
}
