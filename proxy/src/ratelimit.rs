//! Per-agent, per-service rate limits (governor's GCRA).
//!
//! A limit of N per W seconds allows a burst of N and then refills one request every W/N, so a
//! refused caller is told the seconds until its next request would pass, not the whole window.

use std::{num::NonZeroU32, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};

use crate::{
    Error, Result,
    config::{RateLimit, RateLimits},
    ids::AgentId,
};

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

/// One keyed limiter per service.
#[derive(Debug)]
pub struct RateLimiter {
    rpc: DefaultKeyedRateLimiter<AgentId>,
    openai: DefaultKeyedRateLimiter<AgentId>,
    anthropic: DefaultKeyedRateLimiter<AgentId>,
    deepseek: DefaultKeyedRateLimiter<AgentId>,
}

fn quota(limit: RateLimit) -> Quota {
    let burst = NonZeroU32::new(limit.requests).unwrap_or(NonZeroU32::MIN);
    let period = Duration::from_secs(limit.per_secs.max(1)) / burst.get();
    Quota::with_period(period.max(Duration::from_nanos(1))).expect("period is non-zero").allow_burst(burst)
}

impl RateLimiter {
    /// Limiters for the configured limits.
    pub fn new(limits: &RateLimits) -> Self {
        RateLimiter {
            rpc: DefaultKeyedRateLimiter::keyed(quota(limits.rpc)),
            openai: DefaultKeyedRateLimiter::keyed(quota(limits.openai)),
            anthropic: DefaultKeyedRateLimiter::keyed(quota(limits.anthropic)),
            deepseek: DefaultKeyedRateLimiter::keyed(quota(limits.deepseek)),
        }
    }

    /// Takes one request from `agent_id`'s quota for `service`, or says when to come back.
    pub fn check(&self, service: Service, agent_id: &AgentId) -> Result<()> {
        let limiter = match service {
            Service::Rpc => &self.rpc,
            Service::OpenAi => &self.openai,
            Service::Anthropic => &self.anthropic,
            Service::DeepSeek => &self.deepseek,
        };
        limiter.check_key(agent_id).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            // Round up: a client that waits exactly this long must get through.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Error::RateLimited { retry_after_secs: secs.max(1) }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse_with_the_time_to_the_next_slot() {
        let limits = RateLimits { rpc: RateLimit { requests: 30, per_secs: 10 }, ..RateLimits::default() };
        let rl = RateLimiter::new(&limits);
        let a = AgentId::from("ag_a");
        for _ in 0..30 {
            rl.check(Service::Rpc, &a).unwrap();
        }
        match rl.check(Service::Rpc, &a) {
            // One slot refills every 10/30 s, so the wait is under a second, rounded up to 1.
            Err(Error::RateLimited { retry_after_secs }) => assert_eq!(retry_after_secs, 1),
            other => panic!("expected a rate limit, got {other:?}"),
        }
        // Other agents and other services have their own quota.
        rl.check(Service::Rpc, &AgentId::from("ag_b")).unwrap();
        rl.check(Service::OpenAi, &a).unwrap();
    }

    #[test]
    fn long_windows_report_long_waits() {
        let limits = RateLimits { openai: RateLimit { requests: 2, per_secs: 100 }, ..RateLimits::default() };
        let rl = RateLimiter::new(&limits);
        let a = AgentId::from("x");
        rl.check(Service::OpenAi, &a).unwrap();
        rl.check(Service::OpenAi, &a).unwrap();
        let Err(Error::RateLimited { retry_after_secs }) = rl.check(Service::OpenAi, &a) else { panic!() };
        assert!((49..=50).contains(&retry_after_secs), "{retry_after_secs}");
    }
}
