-- Agents and their (hashed) tokens, agent logs, and the audit trail.
CREATE TABLE agents (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    manifest    TEXT NOT NULL,           -- validated assegai.json, as JSON
    source_dir  TEXT,                    -- directory `assegai run` registered it from
    paused      INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,        -- ms since the Unix epoch
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE agent_tokens (
    agent_id    TEXT PRIMARY KEY REFERENCES agents(id) ON DELETE CASCADE,
    token_hash  BLOB NOT NULL,           -- SHA-256 of the token; the token itself is never stored
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE logs (
    id          INTEGER PRIMARY KEY,
    agent_id    TEXT NOT NULL,
    agent_name  TEXT NOT NULL,           -- kept so history reads well after the agent is removed
    level       TEXT NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error', 'success')),
    message     TEXT NOT NULL,
    data        TEXT,                    -- optional JSON
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX logs_by_agent ON logs (agent_id, id);

CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,           -- 'cli', 'proxy', or an agent id
    kind        TEXT NOT NULL,           -- e.g. 'agent.registered'
    agent_id    TEXT,
    detail      TEXT                     -- optional JSON
) STRICT;
