//! Request-body extractors whose failures are our JSON errors: 413 over the size limit, 400 with
//! what is wrong (and where) for malformed JSON or fields.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request, rejection::BytesRejection},
    http::StatusCode,
};
use serde::de::DeserializeOwned;

use crate::{Error, server::AppState};

/// A JSON body of type `T`.
pub struct ApiJson<T>(pub T);

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
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::PayloadTooLarge { limit: state.config().max_body_bytes }
    } else {
        Error::BadRequest(format!("Cannot read the request body: {rejection}"))
    }
}

/// Parses a JSON body, saying where it is wrong.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            Error::BadRequest(format!("Malformed JSON body: {inner}"))
        } else {
            let path = e.path().to_string();
            let message = inner.to_string();
            let message = message.rsplit_once(" at line ").map_or(message.as_str(), |(m, _)| m);
            if path == "." {
                Error::BadRequest(format!("Invalid request body: {message}"))
            } else {
                Error::BadRequest(format!("Invalid request body: field `{path}`: {message}"))
            }
        }
    })
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
    }
}
