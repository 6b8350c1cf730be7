//! The HTTP client an agent uses to reach the proxy.

use std::time::Duration;

use alloy_primitives::{Address, B256, U64, U256};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use crate::{
    ChainId, Error, LogLevel, Result, env,
    wire::{ErrorBody, Health, LogRequest, QueryChainRequest, QueryChainResponse, WalletAddressResponse},
};

/// A client for the Assegai proxy, holding the agent's id and token.
///
/// Cheap to clone; clones share one connection pool.
///
/// ```no_run
/// use assegai_sdk::Assegai;
/// let assegai = Assegai::builder()
///     .proxy_url("http://127.0.0.1:8765")
///     .agent_id("ag_123")
///     .agent_token("token")
///     .build()?;
/// # Ok::<(), assegai_sdk::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Assegai {
    http: reqwest::Client,
    base: String,
    agent_id: String,
    agent_token: String,
    max_retries: u32,
}

/// Builds an [`Assegai`] client with explicit settings; anything unset comes from the environment
/// at [`build`](AssegaiBuilder::build) time.
#[derive(Clone, Debug, Default)]
pub struct AssegaiBuilder {
    proxy_url: Option<String>,
    agent_id: Option<String>,
    agent_token: Option<String>,
    max_retries: Option<u32>,
    timeout: Option<Duration>,
}

impl AssegaiBuilder {
    /// The proxy's base URL, e.g. `http://127.0.0.1:8765`.
    pub fn proxy_url(mut self, url: impl Into<String>) -> Self {
        self.proxy_url = Some(url.into());
        self
    }

    /// The agent id (`X-Assegai-Agent-ID`).
    pub fn agent_id(mut self, id: impl Into<String>) -> Self {
        self.agent_id = Some(id.into());
        self
    }

    /// The agent token (`X-Assegai-Agent-Token`).
    pub fn agent_token(mut self, token: impl Into<String>) -> Self {
        self.agent_token = Some(token.into());
        self
    }

    /// How many times idempotent reads are retried on 429, 5xx and network errors (default 3).
    /// Transactions are never retried.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = Some(retries);
        self
    }

    /// Timeout for each HTTP request (default: none, because transaction requests block until a
    /// person decides).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    /// [`Error::Config`] when the id or token is neither set nor in the environment, or the
    /// proxy URL is not an `http(s)` URL.
    pub fn build(self) -> Result<Assegai> {
        let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let base =
            self.proxy_url.or_else(|| from_env(env::API_PROXY)).unwrap_or_else(|| env::DEFAULT_API_PROXY.to_owned());
        let base = base.trim_end_matches('/').to_owned();
        if reqwest::Url::parse(&base).map(|u| !matches!(u.scheme(), "http" | "https")).unwrap_or(true) {
            return Err(Error::Config(format!("proxy URL `{base}` is not an http(s) URL")));
        }
        let agent_id = self
            .agent_id
            .or_else(|| from_env(env::AGENT_ID))
            .ok_or_else(|| Error::Config(format!("no agent id: set {}", env::AGENT_ID)))?;
        let agent_token = self
            .agent_token
            .or_else(|| from_env(env::AGENT_TOKEN))
            .ok_or_else(|| Error::Config(format!("no agent token: set {}", env::AGENT_TOKEN)))?;
        let mut http = reqwest::Client::builder();
        if let Some(t) = self.timeout {
            http = http.timeout(t);
        }
        let http = http.build().map_err(|e| Error::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(Assegai { http, base, agent_id, agent_token, max_retries: self.max_retries.unwrap_or(3) })
    }
}

impl Assegai {
    /// A client configured from `ASSEGAI_API_PROXY`, `ASSEGAI_AGENT_ID` and `ASSEGAI_AGENT_TOKEN`,
    /// as `assegai run` sets them.
    ///
    /// ```no_run
    /// let assegai = assegai_sdk::Assegai::from_env()?;
    /// # Ok::<(), assegai_sdk::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] when a variable is missing.
    pub fn from_env() -> Result<Self> {
        Self::builder().build()
    }

    /// A builder for explicit settings.
    ///
    /// ```
    /// let b = assegai_sdk::Assegai::builder().max_retries(0);
    /// # let _ = b;
    /// ```
    pub fn builder() -> AssegaiBuilder {
        AssegaiBuilder::default()
    }

    /// The agent id this client authenticates as.
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// The proxy's base URL.
    pub fn proxy_url(&self) -> &str {
        &self.base
    }

    /// `GET /health`: whether the proxy is up. Needs no credentials.
    ///
    /// ```no_run
    /// # async fn f(a: assegai_sdk::Assegai) -> assegai_sdk::Result<()> {
    /// assert_eq!(a.health().await?.status, "ok");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Network`] when the proxy is not reachable.
    pub async fn health(&self) -> Result<Health> {
        self.retrying(|| self.send::<(), Health>(Method::GET, "/health", None)).await
    }

    /// Calls a read-only JSON-RPC method on a chain the manifest allows and decodes its result.
    ///
    /// ```no_run
    /// use assegai_sdk::{Assegai, ChainId, U256};
    /// # async fn f(a: Assegai) -> assegai_sdk::Result<()> {
    /// let gas_price: U256 = a.query_chain(ChainId::ANVIL, "eth_gasPrice", ()).await?;
    /// let block: serde_json::Value =
    ///     a.query_chain(ChainId::ANVIL, "eth_getBlockByNumber", ("latest", false)).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Forbidden`] for a chain or method the policy refuses, [`Error::Rpc`] when the
    /// node answers with an error, [`Error::RateLimited`] once retries are used up.
    pub async fn query_chain<T: DeserializeOwned>(
        &self,
        chain: ChainId,
        method: &str,
        params: impl Serialize,
    ) -> Result<T> {
        let params = match serde_json::to_value(params) {
            Ok(Value::Null) => Value::Array(Vec::new()),
            Ok(v @ (Value::Array(_) | Value::Object(_))) => v,
            Ok(v) => Value::Array(vec![v]),
            Err(e) => return Err(Error::Config(format!("cannot encode params: {e}"))),
        };
        let body = QueryChainRequest { chain, method: method.to_owned(), params };
        let resp: QueryChainResponse =
            self.retrying(|| self.send(Method::POST, "/agent/query-chain", Some(&body))).await?;
        serde_json::from_value(resp.result).map_err(|e| Error::Server {
            status: 200,
            message: format!("cannot decode the result of {method}: {e}"),
            code: String::new(),
        })
    }

    /// Sends a raw JSON-RPC request (an object, or an array for a batch) to `/rpc/{chain}` and
    /// returns the node's reply as is.
    ///
    /// ```no_run
    /// use serde_json::json;
    /// # async fn f(a: assegai_sdk::Assegai) -> assegai_sdk::Result<()> {
    /// let replies = a
    ///     .rpc(assegai_sdk::ChainId::ANVIL, &json!([
    ///         {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
    ///         {"jsonrpc": "2.0", "id": 2, "method": "eth_blockNumber", "params": []},
    ///     ]))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Forbidden`] if any element calls a method the policy refuses (nothing is sent).
    pub async fn rpc(&self, chain: ChainId, request: &Value) -> Result<Value> {
        let path = format!("/rpc/{chain}");
        self.retrying(|| self.send(Method::POST, &path, Some(request))).await
    }

    /// The address the proxy signs with on `chain`.
    ///
    /// ```no_run
    /// # async fn f(a: assegai_sdk::Assegai) -> assegai_sdk::Result<()> {
    /// let me = a.wallet_address(assegai_sdk::ChainId::ANVIL).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFound`] when no wallet is configured for that chain.
    pub async fn wallet_address(&self, chain: ChainId) -> Result<Address> {
        let path = format!("/agent/wallet-address/{chain}");
        let r: WalletAddressResponse = self.retrying(|| self.send::<(), _>(Method::GET, &path, None)).await?;
        Ok(r.address)
    }

    /// The native balance of `address` in wei at the latest block.
    ///
    /// ```no_run
    /// # async fn f(a: assegai_sdk::Assegai) -> assegai_sdk::Result<()> {
    /// let chain = assegai_sdk::ChainId::ANVIL;
    /// let wei = a.balance(chain, a.wallet_address(chain).await?).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`query_chain`](Self::query_chain).
    pub async fn balance(&self, chain: ChainId, address: Address) -> Result<U256> {
        self.query_chain(chain, "eth_getBalance", (address, "latest")).await
    }

    /// The latest block number.
    ///
    /// ```no_run
    /// # async fn f(a: assegai_sdk::Assegai) -> assegai_sdk::Result<()> {
    /// let n = a.block_number(assegai_sdk::ChainId::ANVIL).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`query_chain`](Self::query_chain).
    pub async fn block_number(&self, chain: ChainId) -> Result<u64> {
        let n: U256 = self.query_chain(chain, "eth_blockNumber", ()).await?;
        u64::try_from(n).map_err(|_| Error::Server {
            status: 200,
            message: format!("block number {n} does not fit in u64"),
            code: String::new(),
        })
    }

    /// Sends a log line to the proxy (stored, shown on its console, followed by `assegai logs -f`).
    ///
    /// ```no_run
    /// use assegai_sdk::LogLevel;
    /// # async fn f(a: assegai_sdk::Assegai) -> assegai_sdk::Result<()> {
    /// a.log(LogLevel::Warn, "gas is high", Some(serde_json::json!({"gwei": 80}))).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As any call; a log line is not retried, so it is never stored twice.
    pub async fn log(&self, level: LogLevel, message: impl Into<String>, data: Option<Value>) -> Result<()> {
        let body = LogRequest { level, message: message.into(), data };
        let _: Value = self.send(Method::POST, "/agent/log", Some(&body)).await?;
        Ok(())
    }

    /// Logs at `debug` level.
    ///
    /// ```no_run
    /// # async fn f(a: assegai_sdk::Assegai) -> assegai_sdk::Result<()> {
    /// a.debug("tick").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`log`](Self::log).
    pub async fn debug(&self, message: impl Into<String>) -> Result<()> {
        self.log(LogLevel::Debug, message, None).await
    }

    /// Logs at `info` level.
    ///
    /// ```no_run
    /// # async fn f(a: assegai_sdk::Assegai) -> assegai_sdk::Result<()> {
    /// a.info("started").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`log`](Self::log).
    pub async fn info(&self, message: impl Into<String>) -> Result<()> {
        self.log(LogLevel::Info, message, None).await
    }

    /// Logs at `warn` level.
    ///
    /// ```no_run
    /// # async fn f(a: assegai_sdk::Assegai) -> assegai_sdk::Result<()> {
    /// a.warn("balance is low").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`log`](Self::log).
    pub async fn warn(&self, message: impl Into<String>) -> Result<()> {
        self.log(LogLevel::Warn, message, None).await
    }

    /// Logs at `error` level.
    ///
    /// ```no_run
    /// # async fn f(a: assegai_sdk::Assegai) -> assegai_sdk::Result<()> {
    /// a.error("could not fetch prices").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`log`](Self::log).
    pub async fn error(&self, message: impl Into<String>) -> Result<()> {
        self.log(LogLevel::Error, message, None).await
    }

    /// Logs at `success` level.
    ///
    /// ```no_run
    /// # async fn f(a: assegai_sdk::Assegai) -> assegai_sdk::Result<()> {
    /// a.success("done").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`log`](Self::log).
    pub async fn success(&self, message: impl Into<String>) -> Result<()> {
        self.log(LogLevel::Success, message, None).await
    }

    /// Asks for a transaction and waits until a person decides (up to the proxy's approval
    /// timeout, 5 minutes by default); returns the hash once the user's wallet has signed and
    /// broadcast it. Never retried: a retry could pay twice.
    ///
    /// ```no_run
    /// use assegai_sdk::{ChainId, Error, wire::TxRequest};
    /// # async fn f(a: assegai_sdk::Assegai) -> assegai_sdk::Result<()> {
    /// let request = TxRequest {
    ///     chain: ChainId::ANVIL,
    ///     to: "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045".into(),
    ///     value: "100000000000000".into(), // 0.0001 ETH in wei
    ///     data: None,
    ///     gas_limit: None,
    /// };
    /// match a.request_transaction(&request).await {
    ///     Ok(hash) => println!("sent {hash}"),
    ///     Err(Error::Rejected { .. }) => println!("the user said no"),
    ///     Err(Error::ApprovalTimeout { .. }) => println!("nobody answered"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Rejected`], [`Error::ApprovalTimeout`], [`Error::Forbidden`] with the policy's
    /// reason, [`Error::BadRequest`] for a malformed field, [`Error::Server`] when signing or
    /// broadcasting failed.
    pub async fn request_transaction(&self, request: &crate::wire::TxRequest) -> Result<B256> {
        let sent: crate::wire::TxSent = self.send(Method::POST, "/agent/request-transaction", Some(request)).await?;
        Ok(sent.tx_hash)
    }

    /// Where one of this agent's transaction requests stands.
    ///
    /// ```no_run
    /// # async fn f(a: assegai_sdk::Assegai) -> assegai_sdk::Result<()> {
    /// let info = a.transaction("tx_0123456789abcdef").await?;
    /// println!("{:?} {:?}", info.status, info.tx_hash);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id or another agent's request.
    pub async fn transaction(&self, id: &str) -> Result<crate::wire::TxInfo> {
        let path = format!("/agent/transactions/{id}");
        self.retrying(|| self.send::<(), _>(Method::GET, &path, None)).await
    }

    /// Waits until `tx_hash` is mined on `chain` and returns its receipt, or fails with
    /// [`Error::ReceiptTimeout`] after `timeout` (give or take one second for the last poll).
    ///
    /// Polls `eth_getTransactionReceipt` through the proxy's `/rpc/{chain}`, first after 250 ms and
    /// then less often (up to every 2 s), so it stays well inside the proxy's RPC rate limit; a
    /// 429, 5xx or network error along the way only delays the next poll.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use assegai_sdk::{ChainId, wire::TxRequest};
    /// # async fn f(a: assegai_sdk::Assegai, request: TxRequest) -> assegai_sdk::Result<()> {
    /// let hash = a.request_transaction(&request).await?;
    /// let receipt = a.wait_for_receipt(ChainId::ANVIL, hash, Duration::from_secs(120)).await?;
    /// if !receipt.success {
    ///     a.error(format!("{hash} reverted in block {}", receipt.block_number)).await?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::ReceiptTimeout`] when no receipt appeared in time (the transaction may still be
    /// mined), [`Error::Forbidden`] for a chain the manifest does not allow, [`Error::Rpc`] when the
    /// node answers with an error, [`Error::Server`] for a receipt that cannot be read.
    pub async fn wait_for_receipt(&self, chain: ChainId, tx_hash: B256, timeout: Duration) -> Result<TxReceipt> {
        const FIRST_POLL: Duration = Duration::from_millis(250);
        const SLOWEST_POLL: Duration = Duration::from_secs(2);
        // A last poll that starts at the deadline still gets this long to be answered.
        const LAST_ANSWER: Duration = Duration::from_secs(1);
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        let timed_out = || Error::ReceiptTimeout { tx_hash, waited: started.elapsed() };
        let path = format!("/rpc/{chain}");
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionReceipt", "params": [tx_hash]});
        let mut interval = FIRST_POLL;
        loop {
            let answer_by = deadline.max(tokio::time::Instant::now() + LAST_ANSWER);
            let reply = tokio::time::timeout_at(answer_by, self.send::<_, Value>(Method::POST, &path, Some(&request)))
                .await
                .map_err(|_| timed_out())?;
            let pause = match reply {
                Ok(reply) => match receipt_from_reply(&reply, tx_hash)? {
                    Some(receipt) => return Ok(receipt),
                    None => interval,
                },
                Err(Error::RateLimited { retry_after: Some(after), .. }) => after.max(interval),
                Err(e) if e.is_retryable() => interval,
                Err(e) => return Err(e),
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(timed_out());
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            interval = (interval * 2).min(SLOWEST_POLL);
        }
    }

    /// Calls OpenAI through the proxy: `POST /api/openai/{path}` with `body`; the proxy adds the
    /// user's key. Not retried (a model call costs money).
    ///
    /// ```no_run
    /// use serde_json::json;
    /// # async fn f(a: assegai_sdk::Assegai) -> assegai_sdk::Result<()> {
    /// let reply = a
    ///     .openai("v1/chat/completions", &json!({
    ///         "model": "gpt-4o-mini",
    ///         "messages": [{"role": "user", "content": "Say hi"}],
    ///     }))
    ///     .await?;
    /// let text = reply["choices"][0]["message"]["content"].as_str();
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Forbidden`] when the manifest does not list `openai`, [`Error::RateLimited`], and
    /// the provider's own errors as [`Error::BadRequest`] / [`Error::Server`] with its message.
    pub async fn openai(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(Method::POST, &ai_path("openai", path), Some(body)).await
    }

    /// Calls Anthropic through the proxy: `POST /api/anthropic/{path}` with `body` (the proxy adds
    /// the key and a default `anthropic-version`). Not retried.
    ///
    /// ```no_run
    /// use serde_json::json;
    /// # async fn f(a: assegai_sdk::Assegai) -> assegai_sdk::Result<()> {
    /// let reply = a
    ///     .anthropic("v1/messages", &json!({
    ///         "model": "claude-sonnet-4-20250514",
    ///         "max_tokens": 256,
    ///         "messages": [{"role": "user", "content": "Say hi"}],
    ///     }))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`openai`](Self::openai).
    pub async fn anthropic(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(Method::POST, &ai_path("anthropic", path), Some(body)).await
    }

    /// Calls DeepSeek (OpenAI-compatible) through the proxy: `POST /api/deepseek/{path}`.
    ///
    /// ```no_run
    /// # async fn f(a: assegai_sdk::Assegai) -> assegai_sdk::Result<()> {
    /// let reply = a.deepseek("chat/completions", &serde_json::json!({"model": "deepseek-chat", "messages": []})).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`openai`](Self::openai).
    pub async fn deepseek(&self, path: &str, body: &Value) -> Result<Value> {
        self.send(Method::POST, &ai_path("deepseek", path), Some(body)).await
    }

    /// Calls a provider (`"openai"`, `"anthropic"`, `"deepseek"`) with a streaming request (the
    /// body should say `"stream": true`) and yields its server-sent events as they arrive.
    ///
    /// ```no_run
    /// use futures_util::StreamExt;
    /// use serde_json::json;
    /// # async fn f(a: assegai_sdk::Assegai) -> assegai_sdk::Result<()> {
    /// let mut events = a
    ///     .ai_stream("openai", "v1/chat/completions", &json!({
    ///         "model": "gpt-4o-mini", "stream": true,
    ///         "messages": [{"role": "user", "content": "Count to 3"}],
    ///     }))
    ///     .await?;
    /// while let Some(event) = events.next().await {
    ///     let event = event?;
    ///     if event.data == "[DONE]" { break; }
    ///     let chunk: serde_json::Value = serde_json::from_str(&event.data).unwrap_or_default();
    ///     print!("{}", chunk["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`openai`](Self::openai), before the stream starts; a broken stream yields
    /// [`Error::Network`].
    pub async fn ai_stream(&self, provider: &str, path: &str, body: &Value) -> Result<crate::sse::EventStream> {
        let resp = self
            .http
            .post(format!("{}{}", self.base, ai_path(provider, path)))
            .header(env::HEADER_AGENT_ID, &self.agent_id)
            .header(env::HEADER_AGENT_TOKEN, &self.agent_token)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(body)
            .send()
            .await
            .map_err(Error::Network)?;
        let status = resp.status();
        if !status.is_success() {
            let retry_after = retry_after(resp.headers());
            let bytes = resp.bytes().await.map_err(Error::Network)?;
            return Err(classify(status, error_body(&bytes), retry_after));
        }
        Ok(Box::pin(crate::sse::events(resp.bytes_stream())))
    }

    /// Runs an idempotent call, retrying with exponential backoff (honouring `Retry-After`).
    async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            match call().await {
                Err(e) if e.is_retryable() && attempt < self.max_retries => {
                    let backoff = Duration::from_millis(100 << attempt.min(6));
                    let wait = match &e {
                        Error::RateLimited { retry_after: Some(after), .. } => (*after).max(backoff),
                        _ => backoff,
                    };
                    tokio::time::sleep(wait.min(Duration::from_secs(30))).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn send<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(env::HEADER_AGENT_ID, &self.agent_id)
            .header(env::HEADER_AGENT_TOKEN, &self.agent_token);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(Error::Network)?;
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let bytes = resp.bytes().await.map_err(Error::Network)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| Error::Server {
                status: status.as_u16(),
                message: format!("unreadable reply from the proxy: {e}"),
                code: String::new(),
            });
        }
        Err(classify(status, error_body(&bytes), retry_after))
    }
}

/// A mined transaction, as [`Assegai::wait_for_receipt`] returns it.
///
/// ```no_run
/// # async fn f(a: assegai_sdk::Assegai, hash: assegai_sdk::B256) -> assegai_sdk::Result<()> {
/// let r = a.wait_for_receipt(assegai_sdk::ChainId::ANVIL, hash, std::time::Duration::from_secs(60)).await?;
/// println!("{} in block {}: {} gas, {}", r.tx_hash, r.block_number, r.gas_used, if r.success { "ok" } else { "reverted" });
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TxReceipt {
    /// The transaction's hash.
    pub tx_hash: B256,
    /// `true` for receipt status 1 (executed), `false` for status 0 (reverted).
    pub success: bool,
    /// The block it was mined in.
    pub block_number: u64,
    /// Gas it used.
    pub gas_used: u64,
}

/// The fields of an `eth_getTransactionReceipt` result that [`TxReceipt`] keeps.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawReceipt {
    transaction_hash: B256,
    /// Absent or null while some nodes report a receipt for a still pending transaction.
    #[serde(default)]
    block_number: Option<U64>,
    gas_used: U64,
    /// Absent on pre-Byzantium receipts, which carry a state root instead.
    #[serde(default)]
    status: Option<U64>,
}

/// Reads a JSON-RPC reply to `eth_getTransactionReceipt`: `None` while it is not mined.
fn receipt_from_reply(reply: &Value, tx_hash: B256) -> Result<Option<TxReceipt>> {
    let unreadable = |why: String| Error::Server {
        status: 200,
        message: format!("unreadable receipt for {tx_hash}: {why}"),
        code: String::new(),
    };
    if let Some(error) = reply.get("error").filter(|e| !e.is_null()) {
        let message = error.get("message").and_then(Value::as_str).map_or_else(|| error.to_string(), str::to_owned);
        return Err(Error::Rpc { message: format!("RPC Error: {message}") });
    }
    let result = match reply.get("result") {
        None => return Err(unreadable("the reply has neither `result` nor `error`".into())),
        Some(Value::Null) => return Ok(None),
        Some(result) => result,
    };
    let raw = RawReceipt::deserialize(result).map_err(|e| unreadable(e.to_string()))?;
    if raw.transaction_hash != tx_hash {
        return Err(unreadable(format!("the node answered with the receipt of {}", raw.transaction_hash)));
    }
    let Some(block_number) = raw.block_number else { return Ok(None) };
    let status = raw.status.ok_or_else(|| unreadable("no `status` (a pre-Byzantium receipt)".into()))?;
    Ok(Some(TxReceipt {
        tx_hash,
        success: status == U64::from(1),
        block_number: block_number.to(),
        gas_used: raw.gas_used.to(),
    }))
}

fn ai_path(provider: &str, path: &str) -> String {
    format!("/api/{provider}/{}", path.trim_start_matches('/'))
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Our error body, or (for a provider's own error passed through) its text as the message.
fn error_body(bytes: &[u8]) -> ErrorBody {
    serde_json::from_slice(bytes).unwrap_or_else(|_| ErrorBody {
        error: String::from_utf8_lossy(bytes).chars().take(500).collect(),
        code: String::new(),
    })
}

/// Maps a proxy error reply to the SDK's error, by status first and then by the original
/// product's message strings, so that the same reply means the same thing in every SDK.
fn classify(status: StatusCode, body: ErrorBody, retry_after: Option<Duration>) -> Error {
    let ErrorBody { error: message, code } = body;
    let lower = message.to_ascii_lowercase();
    match status.as_u16() {
        401 => Error::Unauthorized { message },
        403 if lower.contains("rejected by user") => Error::Rejected { message },
        403 => Error::Forbidden { reason: message, code },
        429 => Error::RateLimited { message, retry_after },
        400 if lower.starts_with("rpc error") => Error::Rpc { message },
        400 | 413 => Error::BadRequest { message },
        404 => Error::NotFound { message },
        _ if lower.contains("approval timeout") => Error::ApprovalTimeout { message },
        s => Error::Server { status: s, message, code },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(error: &str) -> ErrorBody {
        ErrorBody { error: error.into(), code: "X".into() }
    }

    #[test]
    fn classifies_like_the_typescript_sdk() {
        let s = |c| StatusCode::from_u16(c).unwrap();
        assert!(matches!(classify(s(401), body("Unauthorized"), None), Error::Unauthorized { .. }));
        assert!(matches!(classify(s(403), body("Transaction rejected by user"), None), Error::Rejected { .. }));
        assert!(matches!(classify(s(403), body("Chain not whitelisted"), None), Error::Forbidden { .. }));
        assert!(matches!(classify(s(500), body("Transaction approval timeout"), None), Error::ApprovalTimeout { .. }));
        assert!(matches!(classify(s(400), body("RPC Error: execution reverted"), None), Error::Rpc { .. }));
        assert!(matches!(classify(s(400), body("invalid JSON"), None), Error::BadRequest { .. }));
        let e = classify(s(429), body("Rate limit exceeded"), Some(Duration::from_secs(2)));
        assert!(matches!(e, Error::RateLimited { retry_after: Some(d), .. } if d.as_secs() == 2));
        assert!(classify(s(502), body("Network request failed"), None).is_retryable());
        assert!(!classify(s(403), body("no"), None).is_retryable());
    }

    #[test]
    fn reads_receipts() {
        let hash = B256::repeat_byte(0xab);
        let reply = |result: Value| json!({"jsonrpc": "2.0", "id": 1, "result": result});
        let mined = |status: &str| {
            reply(json!({"transactionHash": hash, "blockNumber": "0x2a", "gasUsed": "0xb41e", "status": status}))
        };
        let r = receipt_from_reply(&mined("0x1"), hash).unwrap().unwrap();
        assert_eq!((r.tx_hash, r.success, r.block_number, r.gas_used), (hash, true, 42, 46110));
        assert!(!receipt_from_reply(&mined("0x0"), hash).unwrap().unwrap().success);
        assert_eq!(receipt_from_reply(&reply(Value::Null), hash).unwrap(), None);
        let pending = reply(json!({"transactionHash": hash, "blockNumber": null, "gasUsed": "0x0"}));
        assert_eq!(receipt_from_reply(&pending, hash).unwrap(), None);

        let e = receipt_from_reply(&json!({"error": {"code": -32000, "message": "boom"}}), hash).unwrap_err();
        assert!(matches!(&e, Error::Rpc { message } if message == "RPC Error: boom"), "{e:?}");
        let other = mined("0x1").to_string().replace(&format!("{hash}"), &format!("{}", B256::ZERO));
        assert!(receipt_from_reply(&serde_json::from_str(&other).unwrap(), hash).is_err());
        let old = reply(json!({"transactionHash": hash, "blockNumber": "0x1", "gasUsed": "0x1", "root": "0x00"}));
        assert!(matches!(receipt_from_reply(&old, hash), Err(Error::Server { .. })));
        assert!(receipt_from_reply(&json!({"id": 1}), hash).is_err());
    }

    #[test]
    fn builder_needs_credentials_and_a_url() {
        let e = Assegai::builder().proxy_url("ftp://x").agent_id("a").agent_token("t").build().unwrap_err();
        assert!(matches!(e, Error::Config(m) if m.contains("ftp://x")));
        let ok = Assegai::builder().proxy_url("http://127.0.0.1:1/").agent_id("a").agent_token("t").build().unwrap();
        assert_eq!(ok.proxy_url(), "http://127.0.0.1:1");
    }
}
