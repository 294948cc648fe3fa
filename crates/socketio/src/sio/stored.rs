//! The handshake request a Socket.IO session keeps for its CONNECTs, in one allocation: each
//! CONNECT gets a [`RequestInfo`] made from it, so an idle session holds its URI and headers as
//! bytes, not as a `HeaderMap` and a `Uri` (about 300 bytes less per connection).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};

use crate::engine::RequestInfo;

/// A handshake request, kept.
pub(crate) struct StoredRequest {
    /// The URI, then each header's name and value, each followed by a NUL (which neither a URI
    /// nor a header name or value may hold).
    text: Box<[u8]>,
    peer: Option<SocketAddr>,
}

impl StoredRequest {
    /// Keeps `info`.
    pub fn new(info: &RequestInfo) -> StoredRequest {
        let uri = info.uri.to_string();
        let len = uri.len()
            + 1
            + info
                .headers
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len() + 2)
                .sum::<usize>();
        let mut text = Vec::with_capacity(len);
        text.extend_from_slice(uri.as_bytes());
        text.push(0);
        for (name, value) in &info.headers {
            text.extend_from_slice(name.as_str().as_bytes());
            text.push(0);
            text.extend_from_slice(value.as_bytes());
            text.push(0);
        }
        StoredRequest {
            text: text.into_boxed_slice(),
            peer: info.peer,
        }
    }

    /// The request as it was given.
    pub fn info(&self) -> Arc<RequestInfo> {
        let mut parts = self.text.split(|b| *b == 0);
        let uri = parts
            .next()
            .and_then(|u| Uri::try_from(u).ok())
            .unwrap_or_default();
        let mut headers = HeaderMap::new();
        while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                headers.append(name, value);
            }
        }
        Arc::new(RequestInfo {
            headers,
            uri,
            peer: self.peer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_as_given() {
        let mut headers = HeaderMap::new();
        headers.append("host", HeaderValue::from_static("example.com"));
        headers.append("cookie", HeaderValue::from_static("a=1"));
        headers.append("cookie", HeaderValue::from_static("b=2"));
        headers.append("x-empty", HeaderValue::from_static(""));
        headers.append(
            "x-bytes",
            HeaderValue::from_bytes(b"caf\xc3\xa9\t!").unwrap(),
        );
        let info = RequestInfo {
            headers,
            uri: Uri::from_static("/socket.io/?EIO=4&transport=websocket&x=%00"),
            peer: Some("127.0.0.1:9".parse().unwrap()),
        };
        let back = StoredRequest::new(&info).info();
        assert_eq!(back.headers, info.headers);
        assert_eq!(back.uri, info.uri);
        assert_eq!(back.peer, info.peer);
        let empty = RequestInfo {
            headers: HeaderMap::new(),
            uri: Uri::default(),
            peer: None,
        };
        let back = StoredRequest::new(&empty).info();
        assert!(back.headers.is_empty() && back.uri == "/" && back.peer.is_none());
    }
}
