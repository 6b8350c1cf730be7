//! The HTTP client for upstreams (RPC nodes, later AI providers): pooled keep-alive connections,
//! TLS by rustls with the ring provider and the Mozilla root set, no proxy taken from the
//! environment, and one timeout for the whole exchange.
//!
//! Built on hyper directly rather than reqwest so that the TLS choice stays here: the SDK's
//! reqwest is compiled without TLS, and agents never pay for it.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode, Uri, header};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use crate::{Error, Result, config::Config};

/// A pooled HTTP(S) client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl Upstream {
    /// A client with the configured timeout.
    pub fn new(config: &Config) -> Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Internal(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build(connector);
        Ok(Upstream { client, timeout: config.upstream_timeout() })
    }

    /// Sends a request and returns as soon as the response head arrives (the body streams).
    /// The timeout covers connecting and waiting for the head, not a long stream.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<hyper::Response<hyper::body::Incoming>> {
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(Error::UpstreamTimeout),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "upstream request failed");
                Err(Error::Unreachable)
            }
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// POSTs a JSON body and returns the status and the whole reply body.
    pub async fn post_json(&self, uri: Uri, body: Bytes) -> Result<(StatusCode, Bytes)> {
        let req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| Error::Internal(e.to_string()))?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| {
                tracing::warn!(error = %e, "upstream request failed");
                Error::Unreachable
            })?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await.map_err(|e| {
                tracing::warn!(error = %e, "upstream reply broke off");
                Error::Unreachable
            })?;
            Ok((status, bytes.to_bytes()))
        };
        tokio::time::timeout(self.timeout, exchange).await.map_err(|_| Error::UpstreamTimeout)?
    }
}
