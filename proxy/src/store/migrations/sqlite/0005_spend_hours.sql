-- What an agent has committed per chain and hour: the sum of the values of its requests created
-- in that hour that still count against limits (pending, approved, confirmed). Rolling-window
-- checks add whole hours from here and read only the partial first hour from `transactions`, so a
-- check costs the same with a hundred or a hundred thousand requests in the window. Kept in step
-- by the store in the same SQL transaction as every insert and status change.
CREATE TABLE spend_hours (
    agent_id  TEXT NOT NULL,
    chain_id  INTEGER NOT NULL,
    hour      INTEGER NOT NULL,            -- created_at / 3600000
    wei       TEXT NOT NULL,               -- decimal; summed as U256 in Rust, never in SQL
    PRIMARY KEY (agent_id, chain_id, hour)
) STRICT, WITHOUT ROWID;
