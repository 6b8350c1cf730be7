//! A recording tap in front of a real node: every JSON-RPC body the proxy sends is recorded byte
//! for byte and forwarded to the node unchanged, and the node's reply comes back unchanged —
//! unless a test installs a rewrite, to play a node that lies. Tests use it to show what the node
//! received (and what it never did).

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{StatusCode, header},
    response::Response,
};

/// Rewrites the node's reply body to the request body it answers; `None` keeps the reply.
pub type Rewrite = Box<dyn Fn(&[u8], &[u8]) -> Option<Vec<u8>> + Send + Sync>;

/// One body the node was sent, and when.
#[derive(Debug, Clone)]
pub struct Sent {
    /// When the tap received it.
    pub at: Instant,
    /// Exactly the bytes the proxy sent.
    pub body: Vec<u8>,
}

#[derive(Default)]
struct Shared {
    sent: Mutex<Vec<Sent>>,
    rewrite: Mutex<Option<Rewrite>>,
}

/// The tap. Runs on its own thread and runtime, so it works from any test; stops when dropped.
pub struct RpcTap {
    url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Clone)]
struct Tap {
    shared: Arc<Shared>,
    node: String,
    http: reqwest::Client,
}

impl RpcTap {
    /// A tap on a free loopback port forwarding to the node at `node_url`.
    pub fn start(node_url: &str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the RPC tap");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared::default());
        let tap = Tap { shared: Arc::clone(&shared), node: node_url.to_owned(), http: reqwest::Client::new() };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new().fallback(forward).with_state(tap);
        let thread = std::thread::Builder::new()
            .name("rpc-tap".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("RPC tap runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    tokio::select! {
                        r = axum::serve(listener, app) => r.expect("RPC tap server"),
                        _ = stop_rx => {}
                    }
                });
                rt.shutdown_background();
            })
            .expect("spawn the RPC tap thread");
        RpcTap { url, shared, stop: Some(stop_tx), thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT`, to use as the RPC URL.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Every body the node was sent, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.shared.sent.lock().unwrap().clone()
    }

    /// Every body the node was sent, as text, joined with newlines (for searching).
    pub fn sent_text(&self) -> String {
        self.sent().iter().map(|s| String::from_utf8_lossy(&s.body).into_owned()).collect::<Vec<_>>().join("\n")
    }

    /// Forgets what was recorded so far.
    pub fn clear(&self) {
        self.shared.sent.lock().unwrap().clear();
    }

    /// From now on, replies pass through `rewrite` (request body, reply body) first.
    pub fn set_rewrite(&self, rewrite: Rewrite) {
        *self.shared.rewrite.lock().unwrap() = Some(rewrite);
    }
}

impl Drop for RpcTap {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn forward(State(tap): State<Tap>, req: Request) -> Response {
    let body = axum::body::to_bytes(req.into_body(), usize::MAX).await.unwrap_or_default();
    tap.shared.sent.lock().unwrap().push(Sent { at: Instant::now(), body: body.to_vec() });
    let reply =
        tap.http.post(&tap.node).header(header::CONTENT_TYPE, "application/json").body(body.clone()).send().await;
    let (status, reply) = match reply {
        Ok(r) => (r.status(), r.bytes().await.unwrap_or_default()),
        Err(_) => (StatusCode::BAD_GATEWAY, Bytes::new()),
    };
    let reply = match tap.shared.rewrite.lock().unwrap().as_ref().and_then(|f| f(&body, &reply)) {
        Some(new) => Bytes::from(new),
        None => reply,
    };
    Response::builder()
        .status(status.as_u16())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(reply))
        .unwrap()
}
