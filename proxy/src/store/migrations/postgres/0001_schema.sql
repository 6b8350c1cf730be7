-- The schema of SQLite's migrations 0001-0007, in PostgreSQL's types: times are ms since the Unix
-- epoch (BIGINT), wei and token amounts decimal text (compared as U256 in Rust, never in SQL),
-- flags BOOLEAN. A later change is a new file here and one beside it in ../sqlite/.

CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    manifest    TEXT NOT NULL,           -- validated assegai.json, as JSON
    source_dir  TEXT,                    -- directory `assegai run` registered it from
    paused      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE agent_tokens (
    agent_id    TEXT PRIMARY KEY REFERENCES agents(id) ON DELETE CASCADE,
    token_hash  BYTEA NOT NULL,          -- SHA-256 of the token; the token itself is never stored
    created_at  BIGINT NOT NULL
);

CREATE TABLE logs (
    id          BIGSERIAL PRIMARY KEY,
    agent_id    TEXT NOT NULL,
    agent_name  TEXT NOT NULL,
    level       TEXT NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error', 'success')),
    message     TEXT NOT NULL,
    data        TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX logs_by_agent ON logs (agent_id, id);

CREATE TABLE audit_events (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,           -- 'cli', 'proxy', or an agent id
    kind        TEXT NOT NULL,           -- e.g. 'agent.registered'
    agent_id    TEXT,
    detail      TEXT
);

CREATE TABLE api_usage (
    id                  BIGSERIAL PRIMARY KEY,
    agent_id            TEXT NOT NULL,
    agent_name          TEXT NOT NULL,
    provider            TEXT NOT NULL CHECK (provider IN ('openai', 'anthropic', 'deepseek')),
    model               TEXT,
    input_tokens        BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    cache_read_tokens   BIGINT NOT NULL,
    cache_write_tokens  BIGINT NOT NULL,
    cost_nano_usd       BIGINT,          -- NULL: the model has no known price (never 0 for unknown)
    latency_ms          BIGINT NOT NULL,
    status              INTEGER NOT NULL,
    streamed            BOOLEAN NOT NULL,
    estimated           BOOLEAN NOT NULL DEFAULT FALSE,
    created_at          BIGINT NOT NULL
);
CREATE INDEX api_usage_by_agent_time ON api_usage (agent_id, created_at);
CREATE INDEX api_usage_by_time ON api_usage (created_at);

CREATE TABLE transactions (
    id           TEXT PRIMARY KEY,
    agent_id     TEXT NOT NULL,
    agent_name   TEXT NOT NULL,
    chain_id     BIGINT NOT NULL,
    to_address   TEXT NOT NULL,
    value_wei    TEXT NOT NULL,
    data         TEXT NOT NULL,
    gas_limit    BIGINT,
    action       TEXT NOT NULL,
    detail       TEXT,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'confirmed', 'reverted', 'rejected', 'expired', 'failed')),
    tx_hash      TEXT,
    error        TEXT,
    created_at   BIGINT NOT NULL,
    decided_at   BIGINT,
    decided_by   TEXT,
    fee_model    TEXT CHECK (fee_model IN ('eip1559', 'legacy')),
    max_fee_per_gas           TEXT,
    max_priority_fee_per_gas  TEXT,
    max_fee_wei  TEXT,
    fee_wei      TEXT
);
CREATE INDEX transactions_by_agent_time ON transactions (agent_id, created_at);
CREATE INDEX transactions_by_status ON transactions (status);

CREATE TABLE allowances (
    agent_id    TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    chain_id    BIGINT NOT NULL,
    token       TEXT NOT NULL,
    amount      TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (agent_id, chain_id, token)
);

CREATE TABLE spend_hours (
    agent_id  TEXT NOT NULL,
    chain_id  BIGINT NOT NULL,
    hour      BIGINT NOT NULL,
    wei       TEXT NOT NULL,
    PRIMARY KEY (agent_id, chain_id, hour)
);
