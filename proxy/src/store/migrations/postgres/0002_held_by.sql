-- Which proxy holds a pending request (waits for its decision and signs it): `host (home)`, and
-- when its approval timeout ends (ms): after that, any proxy may take it for abandoned.
ALTER TABLE transactions ADD COLUMN held_by TEXT;
ALTER TABLE transactions ADD COLUMN expires_at BIGINT;
