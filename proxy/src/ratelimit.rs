//! Per-agent, per-service rate limits: GCRA, in this process (governor) or shared by every proxy
//! through Redis.
//!
//! A limit of N per W seconds allows a burst of N and then refills one request every W/N, so a
//! refused caller is told the seconds until its next request would pass, not the whole window.
//!
//! With `redis_url` in `config.toml`, each (service, agent) is one GCRA state in Redis, read and
//! advanced by one Lua script (atomic, on Redis's clock), so N proxies let through exactly what
//! one would. If Redis cannot be reached, calls are refused with 503 (fail closed: never
//! unlimited); after a failure the proxy waits [`RETRY_AFTER_FAILURE`] before it tries again, so a
//! dead Redis costs a request no more than a refusal.

use std::{
    num::NonZeroU32,
    sync::Mutex,
    time::{Duration, Instant},
};

use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::{
    Error, Result,
    config::{RateLimit, RateLimits},
    ids::AgentId,
};

/// How long a Redis call (or connecting) may take before the call is refused.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// After Redis failed, calls are refused without trying it again for this long.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// GCRA: the theoretical arrival time (µs, Redis's clock) advances by the emission interval per
/// request; a request passes when that leaves it within the burst. Returns 0 when it passes (and
/// stores the new time, expiring when it no longer matters), else the µs to wait.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + emission
local allow_at = new_tat - emission * burst
if allow_at > now then
  return allow_at - now
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1)
return 0
";

/// The services that are limited separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Chain reads (query-chain and /rpc).
    Rpc,
    /// OpenAI.
    OpenAi,
    /// Anthropic.
    Anthropic,
    /// DeepSeek.
    DeepSeek,
}

impl Service {
    fn as_str(self) -> &'static str {
        match self {
            Service::Rpc => "rpc",
            Service::OpenAi => "openai",
            Service::Anthropic => "anthropic",
            Service::DeepSeek => "deepseek",
        }
    }
}

/// The per-agent limits of every service.
#[derive(Debug)]
pub struct RateLimiter {
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    /// One keyed limiter per service, in this process.
    Local {
        rpc: DefaultKeyedRateLimiter<AgentId>,
        openai: DefaultKeyedRateLimiter<AgentId>,
        anthropic: DefaultKeyedRateLimiter<AgentId>,
        deepseek: DefaultKeyedRateLimiter<AgentId>,
    },
    /// Shared through Redis.
    Shared(Shared),
}

struct Shared {
    limits: RateLimits,
    client: redis::Client,
    script: redis::Script,
    state: tokio::sync::Mutex<Option<ConnectionManager>>,
    failed_at: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared(redis)")
    }
}

fn quota(limit: RateLimit) -> Quota {
    let burst = NonZeroU32::new(limit.requests).unwrap_or(NonZeroU32::MIN);
    let period = Duration::from_secs(limit.per_secs.max(1)) / burst.get();
    Quota::with_period(period.max(Duration::from_nanos(1))).expect("period is non-zero").allow_burst(burst)
}

/// Seconds to tell a refused caller, rounded up: one that waits exactly this long gets through.
fn retry_after(wait: Duration) -> Error {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Error::RateLimited { retry_after_secs: secs.max(1) }
}

fn unavailable(why: impl std::fmt::Display) -> Error {
    Error::LimitsUnavailable(format!(
        "the rate limits are shared through Redis (`redis_url` in config.toml), which cannot be reached ({why}); \
         calls are refused until it answers"
    ))
}

impl RateLimiter {
    /// Limiters for the configured limits, in this process.
    pub fn new(limits: &RateLimits) -> Self {
        RateLimiter {
            backend: Backend::Local {
                rpc: DefaultKeyedRateLimiter::keyed(quota(limits.rpc)),
                openai: DefaultKeyedRateLimiter::keyed(quota(limits.openai)),
                anthropic: DefaultKeyedRateLimiter::keyed(quota(limits.anthropic)),
                deepseek: DefaultKeyedRateLimiter::keyed(quota(limits.deepseek)),
            },
        }
    }

    /// Limits shared with every proxy using the Redis at `url` (`redis://…`). Nothing is
    /// connected yet: the first call connects, and a Redis that is down refuses calls, not the
    /// proxy's start.
    pub fn shared(limits: &RateLimits, url: &str) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|e| Error::Internal(format!("redis_url: {e}")))?;
        Ok(RateLimiter {
            backend: Backend::Shared(Shared {
                limits: limits.clone(),
                client,
                script: redis::Script::new(GCRA_SCRIPT),
                state: tokio::sync::Mutex::new(None),
                failed_at: Mutex::new(None),
            }),
        })
    }

    /// Whether the limits are shared through Redis.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Shared(_))
    }

    /// Takes one request from `agent_id`'s quota for `service`, or says when to come back.
    pub async fn check(&self, service: Service, agent_id: &AgentId) -> Result<()> {
        match &self.backend {
            Backend::Local { rpc, openai, anthropic, deepseek } => {
                let limiter = match service {
                    Service::Rpc => rpc,
                    Service::OpenAi => openai,
                    Service::Anthropic => anthropic,
                    Service::DeepSeek => deepseek,
                };
                limiter.check_key(agent_id).map_err(|not_until| {
                    retry_after(not_until.wait_time_from(governor::clock::DefaultClock::default().now()))
                })
            }
            Backend::Shared(shared) => {
                let limit = shared.limit(service);
                let burst = u64::from(limit.requests.max(1));
                let emission_us = (limit.per_secs.max(1) * 1_000_000).div_ceil(burst);
                let key = format!("assegai:ratelimit:{}:{agent_id}", service.as_str());
                let wait_us = shared.run(&key, emission_us, burst).await?;
                if wait_us == 0 { Ok(()) } else { Err(retry_after(Duration::from_micros(wait_us))) }
            }
        }
    }

    /// Whether the Redis the limits are shared through answers (`assegai doctor`); limits kept
    /// in this process always can be checked.
    pub async fn reachable(&self) -> Result<()> {
        let Backend::Shared(shared) = &self.backend else { return Ok(()) };
        let mut conn = shared.connection().await?;
        match tokio::time::timeout(REDIS_TIMEOUT, redis::cmd("PING").query_async::<String>(&mut conn)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(shared.failed(e)),
            Err(_) => Err(shared.failed("no answer within a second")),
        }
    }
}

impl Shared {
    fn limit(&self, service: Service) -> RateLimit {
        match service {
            Service::Rpc => self.limits.rpc,
            Service::OpenAi => self.limits.openai,
            Service::Anthropic => self.limits.anthropic,
            Service::DeepSeek => self.limits.deepseek,
        }
    }

    /// The script's answer for `key`: 0, or the µs to wait.
    async fn run(&self, key: &str, emission_us: u64, burst: u64) -> Result<u64> {
        let mut conn = self.connection().await?;
        let mut invocation = self.script.key(key);
        invocation.arg(emission_us).arg(burst);
        match tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async::<u64>(&mut conn)).await {
            Ok(Ok(wait)) => Ok(wait),
            Ok(Err(e)) => Err(self.failed(e)),
            Err(_) => Err(self.failed("no answer within a second")),
        }
    }

    async fn connection(&self) -> Result<ConnectionManager> {
        self.refuse_if_failed_recently()?;
        let mut state = self.state.lock().await;
        if let Some(conn) = &*state {
            return Ok(conn.clone());
        }
        // Callers that queued behind a connection attempt that failed do not each try again.
        self.refuse_if_failed_recently()?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT)
            .set_number_of_retries(1);
        let connecting = ConnectionManager::new_with_config(self.client.clone(), config);
        match tokio::time::timeout(REDIS_TIMEOUT * 2, connecting).await {
            Ok(Ok(conn)) => {
                *state = Some(conn.clone());
                Ok(conn)
            }
            Ok(Err(e)) => Err(self.failed(e)),
            Err(_) => Err(self.failed("connecting took too long")),
        }
    }

    fn refuse_if_failed_recently(&self) -> Result<()> {
        match *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(at) if at.elapsed() < RETRY_AFTER_FAILURE => Err(unavailable("it did not answer a moment ago")),
            _ => Ok(()),
        }
    }

    fn failed(&self, why: impl std::fmt::Display) -> Error {
        *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        tracing::warn!(error = %why, "Redis for the shared rate limits cannot be reached");
        unavailable(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn burst_then_refuse_with_the_time_to_the_next_slot() {
        let limits = RateLimits { rpc: RateLimit { requests: 30, per_secs: 10 }, ..RateLimits::default() };
        let rl = RateLimiter::new(&limits);
        let a = AgentId::from("ag_a");
        for _ in 0..30 {
            rl.check(Service::Rpc, &a).await.unwrap();
        }
        match rl.check(Service::Rpc, &a).await {
            // One slot refills every 10/30 s, so the wait is under a second, rounded up to 1.
            Err(Error::RateLimited { retry_after_secs }) => assert_eq!(retry_after_secs, 1),
            other => panic!("expected a rate limit, got {other:?}"),
        }
        // Other agents and other services have their own quota.
        rl.check(Service::Rpc, &AgentId::from("ag_b")).await.unwrap();
        rl.check(Service::OpenAi, &a).await.unwrap();
    }

    #[tokio::test]
    async fn long_windows_report_long_waits() {
        let limits = RateLimits { openai: RateLimit { requests: 2, per_secs: 100 }, ..RateLimits::default() };
        let rl = RateLimiter::new(&limits);
        let a = AgentId::from("x");
        rl.check(Service::OpenAi, &a).await.unwrap();
        rl.check(Service::OpenAi, &a).await.unwrap();
        let Err(Error::RateLimited { retry_after_secs }) = rl.check(Service::OpenAi, &a).await else { panic!() };
        assert!((49..=50).contains(&retry_after_secs), "{retry_after_secs}");
    }
}
