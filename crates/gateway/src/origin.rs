//! Which web pages may use this node from a browser: the `Origin` check and the CORS answers
//! for the browser transports (WebSocket, long-poll; the Socket.IO endpoint can take the same).
//!
//! A request with an `Origin` that is not allowed is refused with 403 `forbidden` before its
//! handler runs (a WebSocket upgrade is refused before it happens); a request without `Origin`
//! comes from a native client and is not checked. An allowed origin gets CORS headers on the
//! answer, and a preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered here.
//! No credentials (cookies) are involved: clients send bearer tokens.

use crate::http_error::ApiError;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use switchboard_core::Error;

/// The origins allowed to use the browser transports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPolicy {
    /// Every origin (`*`).
    Any,
    /// These origins, normalised (`scheme://host[:port]`, lower case, no default port).
    List(Vec<String>),
}

impl OriginPolicy {
    /// Parses `--allowed-origins`: `*`, or origins separated by commas
    /// (`https://app.example.com,http://localhost:3000`).
    pub fn parse(spec: &str) -> Result<OriginPolicy, String> {
        let parts: Vec<&str> = spec
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if parts == ["*"] {
            return Ok(OriginPolicy::Any);
        }
        if parts.is_empty() {
            return Err("--allowed-origins is empty: give `*` or origins".into());
        }
        parts
            .iter()
            .map(|p| {
                normalise(p).ok_or_else(|| {
                    format!("`{p}` is not an origin (scheme://host[:port], no path, or `*`)")
                })
            })
            .collect::<Result<_, _>>()
            .map(OriginPolicy::List)
    }

    /// The default: only the origin of the node's public URL (pages it serves itself).
    pub fn for_public_url(public_url: &str) -> OriginPolicy {
        let origin = public_url.split('/').take(3).collect::<Vec<_>>().join("/");
        OriginPolicy::List(normalise(&origin).into_iter().collect())
    }

    /// Whether a request with this `Origin` header may go on.
    pub fn allows(&self, origin: &[u8]) -> bool {
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::List(list) => std::str::from_utf8(origin)
                .ok()
                .and_then(normalise)
                .is_some_and(|o| list.contains(&o)),
        }
    }

    /// Wraps every route of `router` in the check (see the module's documentation). The
    /// routes' 405 answer is set here, inside the check, so that a preflight (an `OPTIONS` no
    /// route takes) reaches it.
    pub fn apply<S: Clone + Send + Sync + 'static>(
        self: Arc<Self>,
        router: Router<S>,
    ) -> Router<S> {
        router
            .method_not_allowed_fallback(crate::http_error::method_not_allowed)
            .layer(axum::middleware::from_fn_with_state(self, check))
    }
}

/// `scheme://host[:port]` in lower case without its scheme's default port, or `None` if `s`
/// is not such an origin (`null`, a path, a query, user info, an empty host).
fn normalise(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let rest = rest.strip_suffix('/').unwrap_or(rest).to_ascii_lowercase();
    let bad = |c: char| matches!(c, '/' | '?' | '#' | '@') || c.is_whitespace();
    if !matches!(scheme.as_str(), "http" | "https") || rest.is_empty() || rest.contains(bad) {
        return None;
    }
    let default = if scheme == "https" { ":443" } else { ":80" };
    let host = rest.strip_suffix(default).unwrap_or(&rest);
    Some(format!("{scheme}://{host}"))
}

/// Whether `origin` names the host the request was sent to (its `Host` header), the scheme's
/// default port aside.
fn same_origin(origin: &[u8], host: Option<&HeaderValue>) -> bool {
    let (Some(origin), Some(host)) = (
        std::str::from_utf8(origin).ok().and_then(normalise),
        host.and_then(|h| h.to_str().ok()),
    ) else {
        return false;
    };
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let host = host.trim().to_ascii_lowercase();
    let default = if scheme == "https" { ":443" } else { ":80" };
    !host.is_empty() && host.strip_suffix(default).unwrap_or(&host) == authority
}

/// The middleware: 403 for an origin not allowed, the preflight's answer, CORS headers.
async fn check(State(policy): State<Arc<OriginPolicy>>, req: Request, next: Next) -> Response {
    let Some(origin) = req.headers().get(header::ORIGIN).cloned() else {
        return next.run(req).await;
    };
    if same_origin(origin.as_bytes(), req.headers().get(header::HOST)) {
        // A page this node served itself, under whatever name the browser reached it by
        // (`localhost` for a public URL of `127.0.0.1`, say): never a cross-site request.
        return next.run(req).await;
    }
    if !policy.allows(origin.as_bytes()) {
        return ApiError(Error::forbidden(
            "this page's origin may not use this server (see --allowed-origins)",
        ))
        .into_response();
    }
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut resp = if preflight {
        let mut resp = StatusCode::NO_CONTENT.into_response();
        let h = resp.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        resp
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.append(header::VARY, HeaderValue::from_static("origin"));
    resp
}

#[cfg(test)]
mod same_origin_tests {
    use super::*;

    #[test]
    fn an_origin_naming_the_requests_own_host_is_same_origin() {
        let host = |h: &'static str| Some(HeaderValue::from_static(h));
        assert!(same_origin(
            b"http://localhost:7700",
            host("localhost:7700").as_ref()
        ));
        assert!(same_origin(
            b"http://LocalHost:7700",
            host("localhost:7700").as_ref()
        ));
        assert!(same_origin(
            b"https://chat.example.com",
            host("chat.example.com:443").as_ref()
        ));
        assert!(same_origin(
            b"http://chat.example.com",
            host("chat.example.com").as_ref()
        ));
        assert!(!same_origin(
            b"http://evil.example:7700",
            host("localhost:7700").as_ref()
        ));
        assert!(!same_origin(
            b"http://localhost:7701",
            host("localhost:7700").as_ref()
        ));
        assert!(!same_origin(b"null", host("localhost:7700").as_ref()));
        assert!(!same_origin(b"http://localhost:7700", None));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_compared_normalised() {
        let p = OriginPolicy::parse("https://App.example.com:443, http://localhost:3000").unwrap();
        assert!(p.allows(b"https://app.example.com"));
        assert!(p.allows(b"http://localhost:3000"));
        assert!(!p.allows(b"http://localhost:3001"));
        assert!(!p.allows(b"http://app.example.com"));
        assert!(!p.allows(b"null"));
        assert!(!p.allows(&[0xff]));
        assert_eq!(OriginPolicy::parse(" * ").unwrap(), OriginPolicy::Any);
        assert!(OriginPolicy::parse("example.com").is_err());
        assert!(OriginPolicy::parse("https://a.com/path").is_err());
        assert!(OriginPolicy::parse(",").is_err());
        let d = OriginPolicy::for_public_url("https://chat.example.com/base");
        assert_eq!(
            d,
            OriginPolicy::List(vec!["https://chat.example.com".into()])
        );
        let d = OriginPolicy::for_public_url("http://127.0.0.1:7700");
        assert!(d.allows(b"http://127.0.0.1:7700"));
    }
}
