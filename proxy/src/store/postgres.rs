//! The PostgreSQL backend, for a team that shares one database across hosts: connections, the
//! schema, and the [`Db`] interface the store's queries run on.
//!
//! Client: the synchronous `postgres` crate. The store's interface is synchronous (the proxy runs
//! every call on the blocking pool through `state::db`; the CLI calls it directly), and the
//! check-and-insert of a pending request is one SQL transaction with no await inside; a sync
//! client keeps both backends behind the same [`Db`] calls, where `tokio-postgres` with
//! `deadpool-postgres` would make the store async for one backend only. The crate drives each
//! connection with a runtime of its own, which cannot run inside a tokio task (the CLI's commands
//! are one), so every call runs on a short-lived scoped thread of its own: about 30 µs, against a
//! network round trip per statement. Connections are pooled here (a few dozen lines, with their
//! prepared statements), opened on first use, dropped when broken.
//!
//! Migrations: `migrations/postgres/NNNN_*.sql`, applied in order, each in its own transaction and
//! recorded in `assegai_migrations`, all under a session-level advisory lock: proxies that start
//! together migrate once, and the others wait for the lock and then find the schema complete. A
//! database migrated by a newer Assegai is refused rather than used with a schema this one does
//! not know.

use std::{
    collections::HashMap,
    sync::{Condvar, Mutex},
    time::Duration,
};

use ::postgres::{
    Client, NoTls, Statement,
    types::{FromSql, IsNull, ToSql, Type, to_sql_checked},
};
use bytes::BytesMut;
use sha2::{Digest, Sha256};

use super::sql::{Arg, Db, Row, Value};

use super::{Result, StoreError, now_ms};

/// Each migration: its version, name and SQL, oldest first.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "schema", include_str!("migrations/postgres/0001_schema.sql")),
    (2, "held_by", include_str!("migrations/postgres/0002_held_by.sql")),
];

/// The advisory lock key the migrations run under (`assegai` and 1, as bytes).
pub const MIGRATION_LOCK: i64 = 0x6173_7365_6761_6901;

/// How long a connection attempt may take before the call fails (unless the URL says otherwise).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a call waits for a free connection when all of the pool's are busy.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// Connects to `url` (`postgres://user:password@host:port/database`). Errors name neither the URL
/// nor its password.
pub fn connect(url: &str) -> Result<Client> {
    let mut config: ::postgres::Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    Ok(config.connect(NoTls)?)
}

/// A connection and the statements prepared on it (by the store's SQL text).
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

/// Open connections to one database, shared by the store's calls.
pub struct Pool {
    /// Holds the password: never printed (see the `Debug` below).
    url: String,
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Conn>,
    open: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("max", &self.max).finish_non_exhaustive()
    }
}

impl Pool {
    /// Connects to `url` once (so that a wrong URL or password fails now, not at the first
    /// request), migrates the schema, and keeps that connection for later calls.
    pub fn open(url: &str, max: usize) -> Result<Pool> {
        let pool = Pool { url: url.to_owned(), max: max.max(1), state: Mutex::default(), freed: Condvar::new() };
        off_runtime(|| {
            let mut client = connect(url)?;
            migrate(&mut client)?;
            let mut state = pool.lock();
            state.open += 1;
            state.idle.push(Conn { client, statements: HashMap::new() });
            Ok(())
        })?;
        Ok(pool)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // A panic while holding it leaves only a list of connections, each still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one transaction on a pooled connection: committed when it returns `Ok`, rolled
    /// back otherwise.
    pub(super) fn transaction<T: Send>(&self, f: impl FnOnce(&mut dyn Db) -> Result<T> + Send) -> Result<T> {
        off_runtime(|| {
            let mut conn = self.take()?;
            let result = (|| {
                let Conn { client, statements } = &mut conn;
                let mut tx = PgTx { tx: client.transaction()?, statements };
                let value = f(&mut tx)?;
                tx.tx.commit()?;
                Ok(value)
            })();
            self.give_back(conn);
            result
        })
    }

    /// See [`super::Store::listen`].
    pub(super) fn listen(&self, channel: &'static str) -> tokio::sync::mpsc::UnboundedReceiver<Option<String>> {
        use ::postgres::fallible_iterator::FallibleIterator;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let url = self.url.clone();
        let listening = move || {
            while !tx.is_closed() {
                let client = connect(&url).and_then(|mut c| {
                    c.batch_execute(&format!("LISTEN {channel}"))?;
                    Ok(c)
                });
                let Ok(mut client) = client else {
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                };
                // Listening now: whatever changed before (or while reconnecting) is looked at again.
                if tx.send(None).is_err() {
                    return;
                }
                // Woken at least once a second to notice that nobody listens any more.
                loop {
                    match client.notifications().timeout_iter(Duration::from_secs(1)).next() {
                        Ok(Some(note)) => {
                            if tx.send(Some(note.payload().to_owned())).is_err() {
                                return;
                            }
                        }
                        Ok(None) if tx.is_closed() => return,
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "the shared database's notifications stopped; reconnecting");
                            break;
                        }
                    }
                }
            }
        };
        if let Err(e) = std::thread::Builder::new().name("assegai-listen".into()).spawn(listening) {
            tracing::error!(error = %e, "cannot start listening to the shared database");
        }
        rx
    }

    /// See [`super::Store::lock_across_hosts`]: a session lock on a connection of its own, which
    /// the server also releases if this process dies holding it.
    pub(super) fn lock_across_hosts(&self, key: &str) -> Result<HostLock> {
        off_runtime(|| {
            let mut client = connect(&self.url)?;
            client.execute("SELECT pg_advisory_lock($1)", &[&lock_id(key)])?;
            Ok(HostLock { client: Some(client) })
        })
    }

    fn take(&self) -> Result<Conn> {
        let mut state = self.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(conn);
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match connect(&self.url) {
                    Ok(client) => Ok(Conn { client, statements: HashMap::new() }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let (next, waited) = self.freed.wait_timeout(state, POOL_WAIT).unwrap_or_else(|p| p.into_inner());
            state = next;
            if waited.timed_out() && state.idle.is_empty() && state.open >= self.max {
                return Err(StoreError::Busy { connections: self.max });
            }
        }
    }

    fn give_back(&self, conn: Conn) {
        let mut state = self.lock();
        if conn.client.is_closed() {
            state.open -= 1;
            drop(state);
            drop(conn);
        } else {
            state.idle.push(conn);
            drop(state);
        }
        self.freed.notify_one();
    }
}

/// Closing a connection runs its own runtime, which must not happen inside a tokio task (a proxy
/// that stops drops its store there).
impl Drop for Pool {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.lock().idle);
        std::thread::scope(|s| {
            s.spawn(move || drop(idle));
        });
    }
}

/// A lock held for every proxy on a shared database (see [`super::Store::lock_across_hosts`]).
pub struct HostLock {
    client: Option<Client>,
}

impl std::fmt::Debug for HostLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostLock")
    }
}

impl HostLock {
    /// Releases it (blocking: run it on the blocking pool).
    pub fn release(mut self) {
        if let Some(client) = self.client.take() {
            // Ending the session releases its locks.
            off_runtime(|| {
                drop(client);
                Ok(())
            })
            .unwrap_or(());
        }
    }
}

/// Dropped without [`HostLock::release`] (a task cancelled while holding it): the session ends
/// on a thread of its own, which releases the lock a moment later.
impl Drop for HostLock {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            std::thread::spawn(move || drop(client));
        }
    }
}

/// Runs `f` on a scoped thread of its own, outside any tokio runtime (see the module doc).
fn off_runtime<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| s.spawn(f).join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
}

/// A transaction on a pooled connection.
struct PgTx<'a> {
    tx: ::postgres::Transaction<'a>,
    statements: &'a mut HashMap<String, Statement>,
}

impl PgTx<'_> {
    /// The prepared statement of `sql` (the store's `?N` placeholders numbered `$N`).
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.tx.prepare(&dollar_placeholders(sql))?;
        // The store's SQL is a fixed set of texts, so this stays small.
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

impl Db for PgTx<'_> {
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        Ok(self.tx.execute(&statement, &params)?)
    }

    fn query_each(&mut self, sql: &str, args: &[Arg<'_>], each: &mut dyn FnMut(&Row) -> Result<()>) -> Result<()> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a as _).collect();
        for row in self.tx.query(&statement, &params)? {
            let values = (0..row.len()).map(|i| row.try_get::<_, Value>(i)).collect::<Result<Vec<_>, _>>()?;
            each(&Row(values))?;
        }
        Ok(())
    }

    fn lock(&mut self, key: &str) -> Result<()> {
        self.tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_id(key)])?;
        Ok(())
    }

    fn notify(&mut self, channel: &str, payload: &str) -> Result<()> {
        self.tx.execute("SELECT pg_notify($1, $2)", &[&channel, &payload])?;
        Ok(())
    }
}

/// The advisory lock number of a key: the first 8 bytes of its SHA-256, so that unrelated keys
/// collide only by chance (and then merely wait for each other).
pub fn lock_id(key: &str) -> i64 {
    let digest = Sha256::digest(key.as_bytes());
    i64::from_be_bytes(digest[..8].try_into().unwrap_or_default())
}

/// `?1` → `$1`. The store's SQL has no `?` anywhere else (no string literal holds one).
fn dollar_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

impl ToSql for Arg<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Int(v) if *ty == Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
            Arg::Int(v) if *ty == Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
            Arg::Int(v) => v.to_sql(ty, out),
            Arg::Bool(v) => v.to_sql(ty, out),
            Arg::Text(v) => v.as_ref().to_sql(ty, out),
            Arg::Bytes(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [Type::INT2, Type::INT4, Type::INT8, Type::BOOL, Type::TEXT, Type::VARCHAR, Type::BYTEA].contains(ty)
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(if *ty == Type::BOOL {
            Value::Bool(bool::from_sql(ty, raw)?)
        } else if *ty == Type::INT2 {
            Value::Int(i16::from_sql(ty, raw)?.into())
        } else if *ty == Type::INT4 {
            Value::Int(i32::from_sql(ty, raw)?.into())
        } else if *ty == Type::INT8 {
            Value::Int(i64::from_sql(ty, raw)?)
        } else if *ty == Type::BYTEA {
            Value::Bytes(Vec::<u8>::from_sql(ty, raw)?)
        } else {
            Value::Text(String::from_sql(ty, raw)?)
        })
    }

    fn from_sql_null(_: &Type) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Value::Null)
    }

    fn accepts(ty: &Type) -> bool {
        [Type::BOOL, Type::INT2, Type::INT4, Type::INT8, Type::BYTEA, Type::TEXT, Type::VARCHAR, Type::NAME]
            .contains(ty)
    }
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
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(dollar_placeholders("a = ?1 AND b IN (?2, ?10)"), "a = $1 AND b IN ($2, $10)");
        assert_eq!(lock_id("spend/ag_1/1"), lock_id("spend/ag_1/1"));
        assert_ne!(lock_id("spend/ag_1/1"), lock_id("spend/ag_1/2"));
    }

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
