//! The PostgreSQL backend, for a team that shares one database across hosts (issue 14). So far:
//! connecting, and the schema, migrated once however many proxies start together. The store's
//! queries follow, one file of `store/` at a time, behind the same methods SQLite's have.
//!
//! Client: the synchronous `postgres` crate, its connections used on the blocking pool. The
//! store's interface is synchronous (every call already runs on the blocking pool through
//! `state::db`), and the check-and-insert of a pending request is one SQL transaction with no
//! await inside; a sync client keeps both backends' code the same shape, where `tokio-postgres`
//! with `deadpool-postgres` would make the store async for one backend only. (Not callable from an
//! async task: the crate runs its own runtime.)
//!
//! Migrations: `migrations/postgres/NNNN_*.sql`, applied in order, each in its own transaction and
//! recorded in `assegai_migrations`, all under a session-level advisory lock: proxies that start
//! together migrate once, and the others wait for the lock and then find the schema complete. A
//! database migrated by a newer Assegai is refused rather than used with a schema this one does
//! not know.

use ::postgres::{Client, NoTls};

use super::{Result, StoreError, now_ms};

/// Each migration: its version, name and SQL, oldest first.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(1, "schema", include_str!("migrations/postgres/0001_schema.sql"))];

/// The advisory lock key the migrations run under (`assegai` and 1, as bytes).
pub const MIGRATION_LOCK: i64 = 0x6173_7365_6761_6901;

/// Connects to `url` (`postgres://user:password@host:port/database`). Errors name neither the URL
/// nor its password.
pub fn connect(url: &str) -> Result<Client> {
    Ok(Client::connect(url, NoTls)?)
}

/// Brings the schema up to date; returns the versions this call applied (none when another
/// proxy, or an earlier start, did).
pub fn migrate(client: &mut Client) -> Result<Vec<i32>> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let applied = apply(client);
    // A session lock outlives a failed transaction; release it whatever happened.
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    let applied = applied?;
    unlocked?;
    Ok(applied)
}

fn apply(client: &mut Client) -> Result<Vec<i32>> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS assegai_migrations (
             version     INTEGER PRIMARY KEY,
             name        TEXT NOT NULL,
             applied_at  BIGINT NOT NULL
         )",
    )?;
    let done: Vec<i32> =
        client.query("SELECT version FROM assegai_migrations", &[])?.iter().map(|row| row.get(0)).collect();
    let known = MIGRATIONS.last().map_or(0, |(v, _, _)| *v);
    if let Some(found) = done.iter().copied().max().filter(|found| *found > known) {
        return Err(StoreError::NewerSchema { found, known });
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        let mut t = client.transaction()?;
        t.batch_execute(sql)?;
        t.execute(
            "INSERT INTO assegai_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            &[version, name, &now_ms()],
        )?;
        t.commit()?;
        applied.push(*version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_match_their_files() {
        for (i, (version, _, sql)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version, i32::try_from(i + 1).unwrap());
            assert!(!sql.trim().is_empty());
        }
        // Every table SQLite has, PostgreSQL has.
        let pg = MIGRATIONS.iter().map(|(_, _, sql)| *sql).collect::<String>();
        for table in
            ["agents", "agent_tokens", "logs", "audit_events", "api_usage", "transactions", "allowances", "spend_hours"]
        {
            assert!(pg.contains(&format!("CREATE TABLE {table} (")), "{table}");
        }
    }
}
