//! Request extractors whose failures are our JSON errors: 413 over the size limit, 408 for a body
//! that stopped arriving, 400 with what is wrong (and where) for malformed JSON, fields or path
//! parameters; and the middleware that closes a connection whose request body was left unread.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Path, Request, rejection::BytesRejection},
    http::{HeaderValue, StatusCode, header, request::Parts},
};
use hyper::body::Body as _;
use serde::de::DeserializeOwned;

use crate::{Error, server::AppState};

/// A JSON body of type `T`.
pub struct ApiJson<T>(pub T);

/// Path parameters of type `T`; a path that does not decode (bad percent-encoding, invalid UTF-8)
/// is our 400, not axum's plain-text one.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiPath<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(Error::BadRequest(format!("Invalid path: {}", crate::sanitize::quote(&e.body_text(), 200)))),
        }
    }
}

/// A raw body within the size limit.
pub struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Error> {
        Bytes::from_request(req, state).await.map(RawBody).map_err(|r| body_error(&r, state))
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Error> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

fn body_error(rejection: &BytesRejection, state: &AppState) -> Error {
    if is_timeout(rejection) {
        Error::RequestTimeout
    } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::PayloadTooLarge { limit: state.config().max_body_bytes }
    } else {
        Error::BadRequest(format!("Cannot read the request body: {rejection}"))
    }
}

/// Middleware: a reply sent before the request's body was read to its end (a refusal, a 401, a
/// 408 for a stalled body) says `Connection: close`. hyper cannot reuse such a connection and
/// closes it after the reply; without the header the client would put it back in its pool and
/// send its next request into a closing socket.
pub async fn close_if_body_unread(req: Request, next: axum::middleware::Next) -> axum::response::Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let read = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| axum::body::Body::new(Tracked { body, read: read.clone() }));
    let mut resp = next.run(req).await;
    if !read.load(Ordering::Relaxed) {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A request body that notes when it has been read to its end.
struct Tracked {
    body: axum::body::Body,
    read: Arc<AtomicBool>,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        let frame = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || self.body.is_end_stream() {
            self.read.store(true, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Why reading a body of at most `limit` bytes failed: it stalled (the server's body read
/// timeout), it was too large, or the connection broke.
pub fn body_read_error(e: &axum::Error, limit: usize) -> Error {
    if is_timeout(e) {
        Error::RequestTimeout
    } else if is_too_large(e) {
        Error::PayloadTooLarge { limit }
    } else {
        Error::BadRequest(format!("Cannot read the request body: {e}"))
    }
}

fn causes<'a>(e: &'a (dyn std::error::Error + 'static)) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    causes(e).any(|e| e.is::<tower_http::timeout::TimeoutError>())
}

fn is_too_large(e: &(dyn std::error::Error + 'static)) -> bool {
    causes(e).any(|e| e.is::<http_body_util::LengthLimitError>())
}

/// Parses a JSON body, saying where it is wrong. Anything but whitespace after the value is
/// refused: a second value there is something a person reading the first never saw.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(path_error)?;
    de.end().map_err(|e| Error::BadRequest(format!("Malformed JSON body: {e}")))?;
    Ok(value)
}

/// Turns an already parsed JSON value into `T`, with the errors of [`parse_json`].
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Error> {
    serde_path_to_error::deserialize(value).map_err(path_error)
}

fn path_error(e: serde_path_to_error::Error<serde_json::Error>) -> Error {
    let inner = e.inner();
    if inner.is_syntax() || inner.is_eof() {
        Error::BadRequest(format!("Malformed JSON body: {inner}"))
    } else {
        let path = e.path().to_string();
        let message = inner.to_string();
        let message = message.rsplit_once(" at line ").map_or(message.as_str(), |(m, _)| m);
        // serde quotes the offending value (`unknown variant `…``): agent text, kept short and inert.
        let message = crate::sanitize::quote(message, 300);
        if path == "." {
            Error::BadRequest(format!("Invalid request body: {message}"))
        } else {
            Error::BadRequest(format!("Invalid request body: field `{path}`: {message}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assegai_sdk::wire::QueryChainRequest;

    fn msg(body: &str) -> String {
        parse_json::<QueryChainRequest>(body.as_bytes()).err().unwrap().to_string()
    }

    #[test]
    fn says_what_is_wrong() {
        assert!(msg("{\"chain\": ").starts_with("Malformed JSON body"));
        assert!(msg("not json").starts_with("Malformed JSON body"));
        let m = msg(r#"{"chain":"eth:1","method":"eth_chainId"}"#);
        assert!(m.contains("field `chain`") && m.contains("eip155"), "{m}");
        let m = msg(r#"{"chain":"eip155:1"}"#);
        assert!(m.contains("missing field `method`"), "{m}");
        let m = msg(r#"{"chain":"eip155:1","method":"eth_chainId"}{"method":"anvil_mine"}"#);
        assert!(m.starts_with("Malformed JSON body: trailing characters"), "{m}");
        parse_json::<QueryChainRequest>(b" {\"chain\":\"eip155:1\",\"method\":\"eth_chainId\"} \n").unwrap();
    }
}
