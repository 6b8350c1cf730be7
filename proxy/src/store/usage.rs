//! Metered AI calls: one row per call, and the sums reports and budgets read.

use serde::Serialize;

use super::{Result, Store, sql::args};
use crate::ids::AgentId;

/// One forwarded AI call, to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUsage {
    /// The agent's id.
    pub agent_id: AgentId,
    /// The agent's name at the time.
    pub agent_name: String,
    /// `openai`, `anthropic` or `deepseek`.
    pub provider: &'static str,
    /// The model the provider reported (or the request named).
    pub model: Option<String>,
    /// Input tokens that were neither cache reads nor cache writes.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Input tokens read from the provider's cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the provider's cache.
    pub cache_write_tokens: u64,
    /// Cost in nano-USD; `None` when the model has no known price.
    pub cost_nano_usd: Option<u64>,
    /// From request to the end of the reply.
    pub latency_ms: u64,
    /// The upstream's HTTP status.
    pub status: u16,
    /// Whether the reply was a stream.
    pub streamed: bool,
    /// Whether the tokens are the proxy's estimate (the reply gave no final usage).
    pub estimated: bool,
    /// When it finished (ms).
    pub created_at: i64,
}

/// Usage totals for one agent, provider and model.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct UsageSummary {
    /// The agent's id.
    pub agent_id: AgentId,
    /// The agent's name.
    pub agent_name: String,
    /// The provider.
    pub provider: String,
    /// The model (`null` when none was reported).
    pub model: Option<String>,
    /// Whether these calls' tokens are the proxy's estimates (estimated calls get rows of their own).
    pub estimated: bool,
    /// Number of calls.
    pub calls: u64,
    /// Sum of uncached input tokens.
    pub input_tokens: u64,
    /// Sum of output tokens.
    pub output_tokens: u64,
    /// Sum of cache-read tokens.
    pub cache_read_tokens: u64,
    /// Sum of cache-write tokens.
    pub cache_write_tokens: u64,
    /// Sum of known costs, nano-USD.
    pub cost_nano_usd: u64,
    /// Calls whose cost is unknown (their cost is not in the sum).
    pub unpriced_calls: u64,
}

impl Store {
    /// Stores AI usage rows in one transaction.
    pub fn insert_usage(&self, rows: &[NewUsage]) -> Result<()> {
        self.write(|db| {
            for u in rows {
                db.execute(
                    "INSERT INTO api_usage (agent_id, agent_name, provider, model, input_tokens, output_tokens,
                       cache_read_tokens, cache_write_tokens, cost_nano_usd, latency_ms, status, streamed, created_at,
                       estimated)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                    args![
                        &u.agent_id,
                        &u.agent_name,
                        u.provider,
                        u.model.as_ref(),
                        u.input_tokens,
                        u.output_tokens,
                        u.cache_read_tokens,
                        u.cache_write_tokens,
                        u.cost_nano_usd,
                        u.latency_ms,
                        u.status,
                        u.streamed,
                        u.created_at,
                        u.estimated
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// Usage per agent, provider and model since `since_ms`, optionally for one agent.
    pub fn usage_summary(&self, agent_id: Option<&AgentId>, since_ms: i64) -> Result<Vec<UsageSummary>> {
        self.read(|db| {
            db.query(
                "SELECT agent_id, MAX(agent_name), provider, model, COUNT(*), CAST(SUM(input_tokens) AS BIGINT),
                        CAST(SUM(output_tokens) AS BIGINT), CAST(SUM(cache_read_tokens) AS BIGINT),
                        CAST(SUM(cache_write_tokens) AS BIGINT), CAST(COALESCE(SUM(cost_nano_usd), 0) AS BIGINT),
                        SUM(CASE WHEN cost_nano_usd IS NULL THEN 1 ELSE 0 END), estimated
                 FROM api_usage WHERE created_at >= ?1 AND (CAST(?2 AS TEXT) IS NULL OR agent_id = ?2)
                 GROUP BY agent_id, provider, model, estimated ORDER BY MAX(agent_name), provider, model, estimated",
                args![since_ms, agent_id],
            )?
            .iter()
            .map(|r| {
                Ok(UsageSummary {
                    agent_id: r.get(0)?,
                    agent_name: r.get(1)?,
                    provider: r.get(2)?,
                    model: r.get(3)?,
                    estimated: r.get(11)?,
                    calls: r.get(4)?,
                    input_tokens: r.get(5)?,
                    output_tokens: r.get(6)?,
                    cache_read_tokens: r.get(7)?,
                    cache_write_tokens: r.get(8)?,
                    cost_nano_usd: r.get(9)?,
                    unpriced_calls: r.get(10)?,
                })
            })
            .collect()
        })
    }

    /// AI calls and their known cost per UTC day since `since_ms`, optionally for one agent, oldest
    /// first: `(the day's start in ms, calls, nano-USD, calls of unknown cost)`.
    pub fn usage_by_day(&self, agent_id: Option<&AgentId>, since_ms: i64) -> Result<Vec<(i64, u64, u64, u64)>> {
        self.read(|db| {
            db.query(
                "SELECT created_at / 86400000, COUNT(*), CAST(COALESCE(SUM(cost_nano_usd), 0) AS BIGINT),
                        SUM(CASE WHEN cost_nano_usd IS NULL THEN 1 ELSE 0 END)
                 FROM api_usage WHERE created_at >= ?1 AND (CAST(?2 AS TEXT) IS NULL OR agent_id = ?2)
                 GROUP BY 1 ORDER BY 1",
                args![since_ms, agent_id],
            )?
            .iter()
            .map(|r| Ok((r.get::<i64>(0)? * 86_400_000, r.get(1)?, r.get(2)?, r.get(3)?)))
            .collect()
        })
    }

    /// Known AI spend per agent and minute since `since_ms`: `(agent id, the minute's start in ms,
    /// nano-USD)`, by agent then time (what the budget ledger starts from).
    pub fn ai_spend_by_minute(&self, since_ms: i64) -> Result<Vec<(String, i64, u64)>> {
        self.read(|db| {
            db.query(
                "SELECT agent_id, created_at / 60000, CAST(SUM(cost_nano_usd) AS BIGINT) FROM api_usage
                 WHERE created_at >= ?1 AND cost_nano_usd IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
                args![since_ms],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get::<i64>(1)? * 60_000, r.get(2)?)))
            .collect()
        })
    }

    /// An agent's known AI spend since `since_ms`, in nano-USD.
    pub fn ai_spend_since(&self, agent_id: &AgentId, since_ms: i64) -> Result<u64> {
        self.read(|db| {
            db.query_opt(
                "SELECT CAST(COALESCE(SUM(cost_nano_usd), 0) AS BIGINT) FROM api_usage
                 WHERE agent_id = ?1 AND created_at >= ?2",
                args![agent_id, since_ms],
            )?
            .map_or(Ok(0), |r| r.get(0))
        })
    }
}
