//! Request extractors whose failures are our JSON errors: 413 over the size limit, 408 for a body
//! that does not arrive within [`BODY_READ_TIMEOUT`], 400 with what is wrong (and where) for
//! malformed JSON, fields or path parameters.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Path, Request, rejection::BytesRejection},
    http::{StatusCode, request::Parts},
};
use serde::de::DeserializeOwned;

use crate::{
    Error,
    {server::BODY_READ_TIMEOUT, state::AppState},
};

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
        // The deadline's timer is only armed if the body is not all there when first read.
        match tokio::time::timeout(BODY_READ_TIMEOUT, Bytes::from_request(req, state)).await {
            Ok(read) => read.map(RawBody).map_err(|r| body_error(&r, state)),
            Err(_) => Err(Error::RequestTimeout),
        }
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
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::PayloadTooLarge { limit: state.config().max_body_bytes }
    } else {
        Error::BadRequest(format!("Cannot read the request body: {rejection}"))
    }
}

/// Reads a whole body of at most `limit` bytes, within [`BODY_READ_TIMEOUT`] (408 after it: a
/// body that stops arriving must not hold its connection).
pub async fn read_body(body: axum::body::Body, limit: usize) -> Result<Bytes, Error> {
    match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err(Error::RequestTimeout),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if is_too_large(&e) => Err(Error::PayloadTooLarge { limit }),
        Ok(Err(e)) => Err(Error::BadRequest(format!("Cannot read the request body: {e}"))),
    }
}

fn causes<'a>(e: &'a (dyn std::error::Error + 'static)) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
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
