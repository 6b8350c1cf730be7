//! All SQL lives here: the database (SQLite's `assegai.db` in the home, or a team's shared
//! PostgreSQL), its migrations, and typed functions for everything the engine stores. Handlers and
//! commands never write SQL.
//!
//! This module owns opening the database (SQLite: WAL mode, so the proxy and CLI commands can use
//! it at once, migrations under a file lock; PostgreSQL: see [`postgres`]) and its one error type;
//! each submodule owns one kind of row and the functions that read and write it, written once
//! against [`sql::Db`] for both backends. Calls are blocking; async code runs them on the
//! blocking pool.

mod agents;
mod allowances;
mod audit;
mod logs;
pub mod postgres;
mod spend;
pub(crate) mod sql;
#[cfg(test)]
mod tests;
mod txs;
mod usage;

use std::{
    path::{Path, PathBuf},
    sync::{LazyLock, Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

pub use agents::{AGENT_CHANNEL, AgentRow};
pub use allowances::AllowanceRow;
pub use audit::AuditRow;
pub use logs::{LogQuery, LogRow, NewLog};
use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};
use sql::Db;
pub use txs::{NewTx, TX_CHANNEL, TxRow};
pub use usage::{NewUsage, UsageSummary};

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A query failed (the database is the home's `assegai.db`).
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The database could not be opened.
    #[error("{path}: {source}", path = path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The schema could not be brought up to date.
    #[error("{path}: cannot apply migrations: {message}", path = path.display())]
    Migration {
        /// The database file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A PostgreSQL query or connection failed.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// Every connection to the shared database stayed busy.
    #[error("PostgreSQL: all {connections} connections stayed busy for 30 s; is the database overloaded?")]
    Busy {
        /// The pool's size.
        connections: usize,
    },
    /// The shared database was migrated by a newer Assegai than this one.
    #[error(
        "the shared database has schema version {found}, and this Assegai knows only up to {known}; upgrade Assegai on this host"
    )]
    NewerSchema {
        /// The newest version applied to the database.
        found: i32,
        /// The newest this build knows.
        known: i32,
    },
    /// A stored value is not what this version expects.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The name is taken by another agent.
    #[error("an agent named `{0}` already exists")]
    NameTaken(String),
    /// The name belongs to an agent run from another directory.
    #[error("an agent named `{name}` already runs from {dir}; give this one another `name` in its assegai.json")]
    NameTakenElsewhere {
        /// The name.
        name: String,
        /// The other agent's directory.
        dir: String,
    },
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

static MIGRATIONS: LazyLock<Migrations<'static>> = LazyLock::new(|| {
    Migrations::new(vec![
        M::up(include_str!("migrations/sqlite/0001_init.sql")),
        M::up(include_str!("migrations/sqlite/0002_api_usage.sql")),
        M::up(include_str!("migrations/sqlite/0003_transactions.sql")),
        M::up(include_str!("migrations/sqlite/0004_allowances.sql")),
        M::up_with_hook(include_str!("migrations/sqlite/0005_spend_hours.sql"), |t: &rusqlite::Transaction<'_>| {
            let mut db: &Connection = t;
            spend::rebuild_spend_hours(&mut db).map_err(|e| rusqlite_migration::HookError::Hook(e.to_string()))
        }),
        // Rows before it have no fees: what they count is unchanged, so the buckets stand.
        M::up(include_str!("migrations/sqlite/0006_tx_fees.sql")),
        M::up(include_str!("migrations/sqlite/0007_usage_estimated.sql")),
        M::up(include_str!("migrations/sqlite/0008_held_by.sql")),
    ])
});

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The database.
#[derive(Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    /// One connection: the proxy's writes are batched, and SQLite writes one at a time anyway.
    Sqlite(Mutex<Connection>),
    Postgres(postgres::Pool),
}

/// Connections a proxy keeps to a shared database at most.
const POSTGRES_CONNECTIONS: usize = 16;

impl Store {
    /// The home's database: the shared PostgreSQL at `database_url` when there is one, else
    /// `assegai.db` in the home.
    pub fn open_for(home: &crate::config::Home, database_url: Option<&str>) -> Result<Self> {
        match database_url {
            Some(url) => Self::open_shared(url),
            None => Self::open(&home.database()),
        }
    }

    /// Connects to a team's shared PostgreSQL (`postgres://…`) and brings its schema up to date.
    pub fn open_shared(url: &str) -> Result<Self> {
        Ok(Store { backend: Backend::Postgres(postgres::Pool::open(url, POSTGRES_CONNECTIONS)?) })
    }

    /// On a shared database: a stream of the payloads [`sql::Db::notify`] sends on `channel`,
    /// from a connection and thread of its own, with `None` each time it starts listening (what
    /// was sent before, or while reconnecting, is lost: look again). `None` on SQLite, where nobody else writes.
    pub fn listen(&self, channel: &'static str) -> Option<tokio::sync::mpsc::UnboundedReceiver<Option<String>>> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(pool) => Some(pool.listen(channel)),
        }
    }

    /// On a shared database: holds the lock of `key` for every proxy on it until the returned
    /// guard is released (blocking; run it on the blocking pool). `None` on SQLite, where one
    /// proxy's own locks suffice.
    pub fn lock_across_hosts(&self, key: &str) -> Result<Option<postgres::HostLock>> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(pool) => pool.lock_across_hosts(key).map(Some),
        }
    }

    /// Whether this is a shared database (several proxies may use it at once).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Opens (creating if needed) the SQLite database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self> {
        let sql = |source| StoreError::Open { path: path.to_owned(), source };
        let mut conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(sql)?;
        // Two processes opening a new database at once (a command beside a starting proxy) would
        // both read version 0 and both apply the first migration; one waits for the other here.
        let migration = |message: String| StoreError::Migration { path: path.to_owned(), message };
        let mut lock_name = path.file_name().unwrap_or_default().to_owned();
        lock_name.push(".lock");
        let lock_path = path.with_file_name(lock_name);
        let lock = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&lock_path)
                .map_err(|e| migration(format!("cannot open {}: {e}", lock_path.display())))?
        };
        lock.lock().map_err(|e| migration(format!("cannot lock {}: {e}", lock_path.display())))?;
        MIGRATIONS.to_latest(&mut conn).map_err(|e| migration(e.to_string()))?;
        drop(lock);
        restrict_permissions(path);
        Ok(Store { backend: Backend::Sqlite(Mutex::new(conn)) })
    }

    /// Runs reads that need no transaction of their own (SQLite) or one (PostgreSQL).
    fn read<T: Send>(&self, f: impl FnOnce(&mut dyn Db) -> Result<T> + Send) -> Result<T> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                let conn = lock_sqlite(conn);
                let mut db: &Connection = &conn;
                f(&mut db)
            }
            Backend::Postgres(pool) => pool.transaction(f),
        }
    }

    /// Runs `f` in one write transaction, committed when it returns `Ok`. SQLite's begins with
    /// the write lock (`IMMEDIATE`), so write transactions never interleave, across processes
    /// too; PostgreSQL's serialise where they take the same [`Db::lock`].
    fn write<T: Send>(&self, f: impl FnOnce(&mut dyn Db) -> Result<T> + Send) -> Result<T> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                let mut conn = lock_sqlite(conn);
                let t = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let mut db: &Connection = &t;
                let value = f(&mut db)?;
                t.commit()?;
                Ok(value)
            }
            Backend::Postgres(pool) => pool.transaction(f),
        }
    }

    /// The SQLite connection, for tests that look at rows directly.
    #[cfg(test)]
    fn conn(&self) -> MutexGuard<'_, Connection> {
        match &self.backend {
            Backend::Sqlite(conn) => lock_sqlite(conn),
            Backend::Postgres(_) => panic!("not a SQLite store"),
        }
    }
}

fn lock_sqlite(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll back on
    // drop), so a poisoned lock is still safe to use.
    conn.lock().unwrap_or_else(|p| p.into_inner())
}

/// The database holds hashes and history only, but it is nobody else's business.
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}
