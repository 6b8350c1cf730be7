-- Transaction requests: what an agent asked for, the policy's reading of it, and its fate.
CREATE TABLE transactions (
    id           TEXT PRIMARY KEY,
    agent_id     TEXT NOT NULL,
    agent_name   TEXT NOT NULL,
    chain_id     INTEGER NOT NULL,
    to_address   TEXT NOT NULL,            -- checksummed
    value_wei    TEXT NOT NULL,            -- decimal; compared as U256 in Rust, never in SQL
    data         TEXT NOT NULL,            -- 0x-hex calldata
    gas_limit    INTEGER,                  -- NULL: estimate when signing
    action       TEXT NOT NULL,            -- decoded, for people
    detail       TEXT,                     -- JSON: token, amount, decimals… for the approver
    status       TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'confirmed', 'reverted', 'rejected', 'expired', 'failed')),
    tx_hash      TEXT,
    error        TEXT,
    created_at   INTEGER NOT NULL,
    decided_at   INTEGER,
    decided_by   TEXT
) STRICT;
CREATE INDEX transactions_by_agent_time ON transactions (agent_id, created_at);
CREATE INDEX transactions_by_status ON transactions (status);
