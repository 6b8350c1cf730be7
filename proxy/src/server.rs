//! The proxy's lifecycle: the agent-facing router, the admin socket, start-up and
//! clean shutdown, and the limits that keep agents from hoarding connections (SPEC §8).
//!
//! Connections are served by hyper with its own timers: request headers must arrive within
//! [`HEADER_READ_TIMEOUT`] of a connection opening. hyper starts the same timer when a keep-alive
//! connection goes idle, so an idle connection is closed after those 10 s too — sooner than the
//! 60 s SPEC §8 allows ([`IDLE_TIMEOUT`]), which clients cope with as they do with any server that
//! closes idle connections. A request body not read within [`BODY_READ_TIMEOUT`] is a 408: a
//! `tokio::time::timeout` around the one place bodies are read ([`crate::extract`]), which, unlike
//! tower-http's per-frame body timeout, arms no timer for a body that is already there (the AI
//! gateway benchmark sees the difference). Error replies say `Connection: close`. At most `max_connections` (config.toml, default 1024) agent
//! connections are open at once; past it, a few more are let in to answer `/health` (anything else
//! there is 503 `TOO_MANY_CONNECTIONS`) with a short header timeout and no keep-alive, and past
//! those, new connections are closed as soon as they are accepted.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderValue, header},
    middleware,
    routing::{any, get, post},
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
    task::JoinHandle,
};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::{
    Error, Result, admin,
    ai::{self, credentials::Credentials, pricing::Pricing},
    auth::{self, AgentCache},
    chain::ChainClient,
    config::{Config, Home},
    keys::KeyStore,
    logs,
    ratelimit::RateLimiter,
    routes,
    state::{AppState, Inner},
    store::{Store, now_ms},
    upstream::Upstream,
    writer::{self, Writer},
};

/// How long a stopping proxy lets in-flight requests finish.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
/// Request headers must be complete this long after a connection opens or goes idle.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest an idle keep-alive connection stays open (SPEC §8); hyper's header timer closes
/// idle connections at [`HEADER_READ_TIMEOUT`], well within it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A request body must have arrived this long after the handler starts reading it (else 408).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections past `max_connections` still let in to ask for `/health`.
const HEALTH_ONLY_CONNECTIONS: usize = 64;
/// How long such a connection has to send its request.
const HEALTH_ONLY_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// The agent-facing router over `state`.
pub fn router(state: AppState) -> Router {
    let agent_routes = Router::new()
        .route("/agent/query-chain", post(routes::query_chain))
        .route("/rpc/{chain}", post(routes::rpc))
        .route("/agent/wallet-address/{chain}", get(routes::wallet_address))
        .route("/agent/log", post(routes::log))
        .route("/agent/request-transaction", post(routes::request_transaction))
        .route("/agent/transactions/{id}", get(routes::transaction))
        .route("/api/{provider}/{*rest}", any(ai::forward::forward))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::require_agent));
    Router::new()
        .route("/health", get(routes::health))
        .merge(agent_routes)
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(state.config().max_body_bytes))
        // A refusal is often sent before the request's body was read (401, 403, 413, 429, 408),
        // and hyper then cannot reuse the connection: saying so keeps the client from sending its
        // next request into a closing socket.
        .layer(SetResponseHeaderLayer::if_not_present(header::CONNECTION, |r: &axum::response::Response| {
            (r.status().is_client_error() || r.status().is_server_error()).then_some(HeaderValue::from_static("close"))
        }))
        .with_state(state)
}

/// A proxy that is serving. Stop it with [`RunningProxy::stop`].
#[derive(Debug)]
pub struct RunningProxy {
    addr: SocketAddr,
    state: AppState,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
    writers: Vec<Writer>,
    socket: PathBuf,
}

/// Opens the database, binds the agent-facing address and the admin socket, and starts serving.
/// `keys` is the opened key store, or why it could not be opened (AI calls then say so).
pub async fn start(home: &Home, config: Config, keys: Result<Arc<dyn KeyStore>, String>) -> Result<RunningProxy> {
    home.ensure()?;
    let store = Arc::new(Store::open_for(home, config.database_url.as_deref())?);
    let socket = home.admin_socket();
    let admin_listener = bind_admin_socket(&socket).await?;
    let admin_token = admin::issue_token(home)?;
    let tcp = TcpListener::bind(config.listen).await.map_err(|source| Error::Bind { addr: config.listen, source })?;
    let addr = tcp.local_addr().map_err(|source| Error::Bind { addr: config.listen, source })?;

    let pricing_file = home.pricing_file();
    let (pricing, _) = Pricing::installed_or_embedded(&pricing_file)
        .map_err(|e| Error::Config { file: pricing_file.clone(), message: e.to_string() })?;
    let http = Upstream::new(&config)?;
    let config = Arc::new(config);
    let (log_sink, log_writer) = logs::start(store.clone());
    let (usage, usage_writer) = writer::start(store.clone(), "AI usage rows", Store::insert_usage);
    let metering = ai::meter::Metering::open(&store, &config.ai)?;
    let state = AppState::new(Inner {
        agents: AgentCache::new(store.clone()),
        limits: match &config.redis_url {
            Some(url) => RateLimiter::shared(&config.rate_limits, url)?,
            None => RateLimiter::new(&config.rate_limits),
        },
        chain: ChainClient::new(http.clone(), config.clone()),
        upstream: http,
        wallet: crate::wallet::Wallet::new(keys.clone()),
        credentials: Credentials::new(keys),
        pricing: std::sync::RwLock::new(Arc::new(pricing)),
        pricing_file,
        usage,
        metering,
        approvals: crate::tx::Approvals::default(),
        signer: crate::tx::signer::Signer::default(),
        logs: log_sink,
        config,
        store: store.clone(),
        listen: addr,
        started_at: now_ms(),
        holder: crate::state::holder_name(home),
    });
    store.audit("proxy", "proxy.started", None, Some(&serde_json::json!({"listen": addr.to_string()})))?;
    // Whoever waited for these is gone with the previous proxy; they must not count or linger.
    let mine = store.is_shared().then(|| state.holder());
    let expired = store.expire_all_pending(mine, "the proxy restarted while the request waited")?;
    if !expired.is_empty() {
        tracing::warn!(count = expired.len(), "expired transaction requests left pending by the previous proxy");
    }
    let (stop, stopped) = watch::channel(false);
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // Work that runs until the stop, and then ends at once: each holds the state, whose last
    // holder must be gone before the writers can finish.
    let background = |work: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>| {
        let stopped = until_stopped(stopped.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = stopped => {}
                () = work => {}
            }
            Ok(())
        })
    };
    let mut servers = Vec::new();
    // On a shared database: decisions made on other hosts reach the requests this proxy holds,
    // what a proxy that died was holding does not wait forever, and an agent paused or given a
    // new token on another host is read again here.
    if let Some(decided) = store.listen(crate::store::TX_CHANNEL) {
        servers.push(background(Box::pin(crate::tx::follow_decisions(state.clone(), decided))));
        servers.push(background(Box::pin(crate::tx::expire_abandoned(state.clone()))));
    }
    if let Some(changed) = store.listen(crate::store::AGENT_CHANNEL) {
        let state = state.clone();
        servers.push(background(Box::pin(async move { crate::auth::follow_changes(state.agents(), changed).await })));
    }
    servers.extend([
        tokio::spawn(serve_agents(tcp, router(state.clone()), state.config().max_connections, stopped.clone())),
        tokio::spawn(
            axum::serve(
                admin_listener,
                admin::router(state.clone(), admin::Guard::new(admin_token, home, store.clone()))
                    .into_make_service_with_connect_info::<admin::Peer>(),
            )
            .with_graceful_shutdown(until_stopped(stopped))
            .into_future(),
        ),
    ]);
    Ok(RunningProxy { addr, state, stop, servers, writers: vec![log_writer, usage_writer], socket })
}

/// Serves agent connections on `tcp` until `stopped`, with the timeouts and the connection bound
/// of the module docs; then lets open connections finish their requests.
async fn serve_agents(
    tcp: TcpListener,
    app: Router,
    max_connections: usize,
    mut stopped: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let agent_slots = Arc::new(Semaphore::new(max_connections));
    let health_slots = Arc::new(Semaphore::new(HEALTH_ONLY_CONNECTIONS));
    let mut agents = hyper::server::conn::http1::Builder::new();
    agents.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let mut health_only = hyper::server::conn::http1::Builder::new();
    health_only.timer(TokioTimer::new()).header_read_timeout(HEALTH_ONLY_HEADER_TIMEOUT).keep_alive(false);
    let overflow = health_only_router();
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            a = tcp.accept() => a,
            _ = stopped.wait_for(|s| *s) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors, say: give the open connections time to close (what
                // axum::serve does too).
                tracing::error!(error = %e, "cannot accept connections");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Without TCP_NODELAY, Nagle holds a stream's second write until the client's delayed ACK:
        // 40 ms added to every streamed reply.
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        let (permit, conn) = if let Ok(permit) = agent_slots.clone().try_acquire_owned() {
            (permit, graceful.watch(agents.serve_connection(io, TowerToHyperService::new(app.clone()))))
        } else if let Ok(permit) = health_slots.clone().try_acquire_owned() {
            (permit, graceful.watch(health_only.serve_connection(io, TowerToHyperService::new(overflow.clone()))))
        } else {
            // Refused: closed at once.
            continue;
        };
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "agent connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(tcp);
    graceful.shutdown().await;
    Ok(())
}

/// What a connection past the bound is served: `/health`, and for anything else a 503 that says
/// why.
fn health_only_router() -> Router {
    Router::new().route("/health", get(routes::health)).fallback(|| async { Error::TooManyConnections })
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

async fn bind_admin_socket(socket: &std::path::Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if tokio::net::UnixStream::connect(socket).await.is_ok() {
        return Err(Error::AlreadyRunning(socket.to_owned()));
    }
    // Nothing answers: the file, if any, is left over from a proxy that did not stop cleanly.
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket).map_err(|e| Error::io(socket, e))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(|e| Error::io(socket, e))?;
    Ok(listener)
}

impl RunningProxy {
    /// The agent-facing address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Which key store AI calls use (or why there is none).
    pub fn key_store(&self) -> String {
        self.state.credentials().describe()
    }

    /// Follows agent log lines as they arrive.
    pub fn subscribe_logs(&self) -> tokio::sync::broadcast::Receiver<Arc<crate::store::NewLog>> {
        self.state.logs().subscribe()
    }

    /// Stops accepting, finishes in-flight requests, writes out queued log lines and removes the
    /// admin socket.
    pub async fn stop(self) {
        let RunningProxy { state, stop, servers, writers, socket, .. } = self;
        // Requests waiting for a person would otherwise hold the shutdown for their whole approval
        // timeout; they end now, as expired, and their agents get the answer.
        state.approvals().close();
        let _ = stop.send(true);
        // In-flight calls (a long AI stream, say) get a grace period, not forever.
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        for s in servers {
            let abort = s.abort_handle();
            match tokio::time::timeout_at(deadline, s).await {
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server stopped with an error"),
                Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
                Ok(Ok(Ok(()))) => {}
                Err(_) => {
                    tracing::warn!("requests still running {} s after the stop were cut off", SHUTDOWN_GRACE.as_secs());
                    abort.abort();
                }
            }
        }
        // Replies still read after their agents left are recorded now, before the writers finish.
        state.metering().stop_reading();
        let store = state.store().clone();
        // The writers stop once the last senders (inside the state) are gone.
        drop(state);
        for w in writers {
            w.finish().await;
        }
        let _ = store.audit("proxy", "proxy.stopped", None, None);
        let _ = std::fs::remove_file(socket.with_file_name("admin.token"));
        let _ = std::fs::remove_file(socket);
    }
}
