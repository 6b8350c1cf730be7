-- Which proxy holds a pending request (waits for its decision and signs it): `host (home)`.
ALTER TABLE transactions ADD COLUMN held_by TEXT;
