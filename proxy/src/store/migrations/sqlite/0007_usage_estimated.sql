-- A usage row whose tokens are the proxy's conservative estimate, not the provider's report: the
-- reply ended (or was cut off after its agent left) without final usage. Its cost counts against
-- AI budgets all the same.
ALTER TABLE api_usage ADD COLUMN estimated INTEGER NOT NULL DEFAULT 0;
