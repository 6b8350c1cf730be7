//! The one narrow interface both backends' connections offer the store: run a statement with
//! arguments, read rows of plain values, and serialise a transaction on a key. Every query of the
//! store is written once against it, in the SQL SQLite and PostgreSQL both speak (`?N`
//! placeholders, which the PostgreSQL side numbers `$N`; sums cast to `BIGINT`; no `LIMIT -1`), so
//! a rule such as "the check and the insert of a pending request are one step" exists once, not
//! once per database.

use std::borrow::Cow;

use super::{Result, StoreError};
use crate::ids::{AgentId, TxId};

/// An argument of a statement, borrowed where it can be (the usage writer binds thousands).
#[derive(Debug, Clone)]
pub enum Arg<'a> {
    /// SQL `NULL`.
    Null,
    /// An integer (`INTEGER` in SQLite; `BIGINT`, `INTEGER` or `SMALLINT` in PostgreSQL).
    Int(i64),
    /// A boolean (stored as 0/1 by SQLite).
    Bool(bool),
    /// Text.
    Text(Cow<'a, str>),
    /// Bytes (`BLOB` / `BYTEA`).
    Bytes(&'a [u8]),
}

/// A value read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// An integer.
    Int(i64),
    /// A boolean (PostgreSQL's; SQLite gives an integer).
    Bool(bool),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

/// One row of a result.
#[derive(Debug, Clone)]
pub struct Row(pub(super) Vec<Value>);

impl Row {
    /// Column `i` as a `T`; a value of another type is a corrupt row, named by its column.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T> {
        let value = self.0.get(i).unwrap_or(&Value::Null);
        T::from_value(value).ok_or_else(|| StoreError::Corrupt(format!("column {i}: unexpected {value:?}")))
    }

    /// Column `i` as text, borrowed (no copy of it, for the sums that read many).
    pub fn text(&self, i: usize) -> Result<&str> {
        match self.0.get(i) {
            Some(Value::Text(t)) => Ok(t),
            other => Err(StoreError::Corrupt(format!("column {i}: expected text, found {other:?}"))),
        }
    }
}

/// A type a column can be read as.
pub trait FromValue: Sized {
    /// `None` when the value is not of this type.
    fn from_value(value: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }
}

/// Counts and sums: a negative one cannot be, and reads as 0.
impl FromValue for u64 {
    fn from_value(value: &Value) -> Option<Self> {
        i64::from_value(value).map(|v| v.max(0) as u64)
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Bool(v) => Some(*v),
            Value::Int(v) => Some(*v != 0),
            _ => None,
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Text(v) => Some(v.clone()),
            _ => None,
        }
    }
}

impl FromValue for Vec<u8> {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Bytes(v) => Some(v.clone()),
            _ => None,
        }
    }
}

impl FromValue for AgentId {
    fn from_value(value: &Value) -> Option<Self> {
        String::from_value(value).map(AgentId::from)
    }
}

impl FromValue for TxId {
    fn from_value(value: &Value) -> Option<Self> {
        String::from_value(value).map(TxId::from)
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

/// Numbers the store keeps as `u64` (tokens, latencies, chain ids); one beyond `i64` is stored as
/// `i64::MAX` rather than wrapping negative.
impl From<u64> for Arg<'_> {
    fn from(v: u64) -> Self {
        Arg::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<u32> for Arg<'_> {
    fn from(v: u32) -> Self {
        Arg::Int(v.into())
    }
}

impl From<u16> for Arg<'_> {
    fn from(v: u16) -> Self {
        Arg::Int(v.into())
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Cow::Borrowed(v))
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(Cow::Borrowed(v))
    }
}

impl From<String> for Arg<'_> {
    fn from(v: String) -> Self {
        Arg::Text(Cow::Owned(v))
    }
}

impl<'a> From<&'a AgentId> for Arg<'a> {
    fn from(v: &'a AgentId) -> Self {
        Arg::Text(Cow::Borrowed(v.as_str()))
    }
}

impl<'a> From<&'a TxId> for Arg<'a> {
    fn from(v: &'a TxId) -> Self {
        Arg::Text(Cow::Borrowed(v.as_str()))
    }
}

impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(v: &'a [u8]) -> Self {
        Arg::Bytes(v)
    }
}

impl<'a, T: Into<Arg<'a>>> From<Option<T>> for Arg<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Arg::Null, Into::into)
    }
}

/// `args![a, b, …]`: a statement's arguments, each converted with `Arg::from`.
macro_rules! args {
    ($($arg:expr),* $(,)?) => {
        &[$($crate::store::sql::Arg::from($arg)),*][..]
    };
}
pub(super) use args;

/// A connection (or a transaction on one) of either backend.
pub trait Db {
    /// Runs a statement; returns how many rows it changed.
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64>;

    /// Runs a query; returns its rows.
    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>> {
        let mut rows = Vec::new();
        self.query_each(sql, args, &mut |row| {
            rows.push(row.clone());
            Ok(())
        })?;
        Ok(rows)
    }

    /// Runs a query and hands each row to `each` as it is read (the window sums read hundreds of
    /// hour buckets per request; this spares collecting them).
    fn query_each(&mut self, sql: &str, args: &[Arg<'_>], each: &mut dyn FnMut(&Row) -> Result<()>) -> Result<()>;

    /// Holds, until the transaction ends, the lock of `key`: two transactions that take the same
    /// key run one after the other, on one host or several. (SQLite's write transactions already
    /// exclude each other, so there it is a no-op.)
    fn lock(&mut self, key: &str) -> Result<()>;

    /// Tells every listener on `channel` (see [`super::Store::listen`]) once the transaction
    /// commits. (SQLite has one proxy per database, which knows already: a no-op.)
    fn notify(&mut self, channel: &str, payload: &str) -> Result<()>;

    /// The first row of a query, if any.
    fn query_opt(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Option<Row>> {
        Ok(self.query(sql, args)?.into_iter().next())
    }
}

/// The transaction lock key of an agent's spending on a chain (its limits and hour buckets).
pub fn spend_key(agent_id: &AgentId, chain_id: u64) -> String {
    format!("spend/{agent_id}/{chain_id}")
}

// ---- SQLite ----

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Arg::Null => ValueRef::Null,
            Arg::Int(v) => ValueRef::Integer(*v),
            Arg::Bool(v) => ValueRef::Integer(i64::from(*v)),
            Arg::Text(v) => ValueRef::Text(v.as_bytes()),
            Arg::Bytes(v) => ValueRef::Blob(v),
        }))
    }
}

impl Db for &rusqlite::Connection {
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        let mut stmt = self.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(args))? as u64)
    }

    fn query_each(&mut self, sql: &str, args: &[Arg<'_>], each: &mut dyn FnMut(&Row) -> Result<()>) -> Result<()> {
        use rusqlite::types::ValueRef;
        let mut stmt = self.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        let mut row_values = Row(Vec::with_capacity(columns));
        while let Some(row) = rows.next()? {
            row_values.0.clear();
            for i in 0..columns {
                row_values.0.push(match row.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
                    ValueRef::Real(v) => return Err(StoreError::Corrupt(format!("column {i}: a real number {v}"))),
                });
            }
            each(&row_values)?;
        }
        Ok(())
    }

    fn lock(&mut self, _key: &str) -> Result<()> {
        Ok(())
    }

    fn notify(&mut self, _channel: &str, _payload: &str) -> Result<()> {
        Ok(())
    }
}
