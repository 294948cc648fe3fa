//! The HTTP side of Engine.IO: the route, the query (`EIO`, `transport`, `sid`), the handshake,
//! the dispatch to polling or WebSocket, and the error answers the JavaScript server gives
//! (HTTP 400 with `{"code":N,"message":"..."}`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

use super::conn::{EngineConn, Shared, Transport};
use super::handler::RequestInfo;
use super::server::Engine;
use super::{polling, ws};

/// The Engine.IO error codes of the JavaScript server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    UnknownTransport = 0,
    UnknownSid = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    Forbidden = 4,
    UnsupportedProtocolVersion = 5,
}

impl ErrorCode {
    fn message(self) -> &'static str {
        match self {
            ErrorCode::UnknownTransport => "Transport unknown",
            ErrorCode::UnknownSid => "Session ID unknown",
            ErrorCode::BadHandshakeMethod => "Bad handshake method",
            ErrorCode::BadRequest => "Bad request",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }
}

/// The JSON error answer for `code`.
pub(crate) fn error(code: ErrorCode) -> Response {
    let status = if code == ErrorCode::Forbidden {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::BAD_REQUEST
    };
    let body = format!(
        r#"{{"code":{},"message":"{}"}}"#,
        code as u8,
        code.message()
    );
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub(crate) fn router(engine: Arc<Engine>, path: &str) -> Router {
    let trimmed = path.trim_end_matches('/');
    let with_slash = format!("{trimmed}/");
    let mut router = Router::new().route(&with_slash, any(handle));
    if !trimmed.is_empty() {
        router = router.route(trimmed, any(handle));
    }
    router.with_state(engine)
}

/// The query parameters Engine.IO reads.
#[derive(Default)]
struct Query {
    eio: Option<String>,
    transport: Option<String>,
    sid: Option<String>,
}

fn parse_query(query: Option<&str>) -> Query {
    let mut q = Query::default();
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "EIO" => &mut q.eio,
            "transport" => &mut q.transport,
            "sid" => &mut q.sid,
            _ => continue,
        };
        *slot = Some(percent_decode(value));
    }
    q
}

/// Decodes `%XX` escapes (sids are URL-safe, but a client may escape `~` and the like).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(State(engine): State<Arc<Engine>>, req: Request) -> Response {
    let q = parse_query(req.uri().query());
    let websocket = match q.transport.as_deref() {
        Some("polling") => false,
        Some("websocket") => true,
        _ => return error(ErrorCode::UnknownTransport),
    };
    if q.eio.as_deref() != Some("4") {
        return error(ErrorCode::UnsupportedProtocolVersion);
    }
    match q.sid {
        // A session whose pong or connect deadline passed is closed now, not at its timer's
        // next wake-up: a request that comes after the deadline never finds it open.
        Some(sid) => match engine.get(&sid).filter(|s| {
            super::session::heartbeat(s, tokio::time::Instant::now());
            s.reachable()
        }) {
            Some(session) if websocket => ws::upgrade(session, req).await,
            Some(session) => polling::request(session, req).await,
            None => match engine.unknown_sid.clone() {
                Some(hook) => hook(req, sid).await,
                None => error(ErrorCode::UnknownSid),
            },
        },
        None if req.method() != Method::GET => error(ErrorCode::BadHandshakeMethod),
        None if websocket => ws::handshake(engine, req).await,
        None => polling::handshake(engine, req),
    }
}

/// The request's headers, URI and peer, for the application's handler. Copied, not cloned:
/// hyper's header values are slices of the connection's read buffer, and a clone would keep
/// that whole buffer alive for the session's life.
pub(crate) fn request_info(req: &Request) -> RequestInfo {
    // The WebSocket handshake's own headers say nothing to the application: not kept.
    let skip = [
        header::CONNECTION,
        header::UPGRADE,
        header::SEC_WEBSOCKET_KEY,
        header::SEC_WEBSOCKET_VERSION,
        header::SEC_WEBSOCKET_EXTENSIONS,
    ];
    let kept = || {
        req.headers()
            .iter()
            .filter(|(name, _)| !skip.contains(name))
    };
    let mut headers = HeaderMap::with_capacity(kept().count());
    for (name, value) in kept() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    RequestInfo {
        headers,
        uri: Uri::try_from(req.uri().to_string()).unwrap_or_default(),
        peer: req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0),
    }
}

/// The open packet's JSON, keys in the order socket.io writes them.
pub(crate) fn open_packet(engine: &Engine, sid: &str, transport: Transport) -> String {
    let upgrades = if transport == Transport::Polling {
        r#"["websocket"]"#
    } else {
        "[]"
    };
    let sid = serde_json::to_string(sid).unwrap_or_default();
    format!(
        r#"0{{"sid":{sid},"upgrades":{upgrades},"pingInterval":{},"pingTimeout":{},"maxPayload":{}}}"#,
        engine.config.ping_interval.as_millis(),
        engine.config.ping_timeout.as_millis(),
        engine.config.max_payload
    )
}

/// Creates a session: registers it and asks the application for its handler.
pub(crate) fn open_session(
    engine: &Arc<Engine>,
    transport: Transport,
    info: RequestInfo,
) -> Arc<Shared> {
    let sid = engine.new_sid();
    let shared = Shared::new(sid.clone(), transport, engine.clone());
    let handler = engine.handler.open(EngineConn(shared.clone()), info);
    // Nobody else holds the session yet: the lock is free.
    if let Ok(mut slot) = shared.handler.try_lock() {
        *slot = Some(handler);
    }
    engine.sessions.lock().insert(sid, shared.clone());
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_escapes() {
        let q = parse_query(Some("EIO=4&transport=polling&sid=ab%7Ecd&t=x"));
        assert_eq!(
            (q.eio.as_deref(), q.transport.as_deref(), q.sid.as_deref()),
            (Some("4"), Some("polling"), Some("ab~cd"))
        );
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("a%7"), "a%7");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%é"), "%é");
        assert!(parse_query(None).eio.is_none());
    }
}
