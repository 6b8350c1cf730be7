-- Token allowances set with `assegai allowance set`. They take precedence over the manifest's
-- `allowances` for the same agent, chain and token (so a person can lower one without editing
-- files); the amount is decimal text in token units, read with the token's decimals at check time.
CREATE TABLE allowances (
    agent_id    TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    chain_id    INTEGER NOT NULL,
    token       TEXT NOT NULL,             -- checksummed address
    amount      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (agent_id, chain_id, token)
) STRICT, WITHOUT ROWID;
