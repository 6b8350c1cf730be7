-- One row per forwarded AI call: tokens by class and what they cost.
CREATE TABLE api_usage (
    id                  INTEGER PRIMARY KEY,
    agent_id            TEXT NOT NULL,
    agent_name          TEXT NOT NULL,
    provider            TEXT NOT NULL CHECK (provider IN ('openai', 'anthropic', 'deepseek')),
    model               TEXT,
    input_tokens        INTEGER NOT NULL,   -- neither cache reads nor cache writes
    output_tokens       INTEGER NOT NULL,
    cache_read_tokens   INTEGER NOT NULL,
    cache_write_tokens  INTEGER NOT NULL,
    cost_nano_usd       INTEGER,            -- NULL: the model has no known price (never 0 for unknown)
    latency_ms          INTEGER NOT NULL,
    status              INTEGER NOT NULL,   -- upstream HTTP status
    streamed            INTEGER NOT NULL,
    created_at          INTEGER NOT NULL
) STRICT;
CREATE INDEX api_usage_by_agent_time ON api_usage (agent_id, created_at);
CREATE INDEX api_usage_by_time ON api_usage (created_at);
