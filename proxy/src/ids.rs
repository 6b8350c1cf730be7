//! The proxy's ids for agents (`ag_…`) and transaction requests (`tx_…`): distinct types, so an
//! agent id can never be passed where a request id is meant, from the HTTP edge to the store (on
//! the wire and in SQLite they are plain text).

use std::{borrow::Borrow, fmt, str::FromStr};

use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The prefix and the hex digits of `random` (the proxy mints ids this way).
            pub fn from_random(random: &[u8]) -> Self {
                $name(format!("{}{}", $prefix, hex::encode(random)))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        /// An id as stored: taken as it is (the proxy wrote it).
        impl From<String> for $name {
            fn from(id: String) -> Self {
                $name(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                $name(id.to_owned())
            }
        }

        /// Text that must be an id (a URL segment, an argument): its prefix and 1 to 64 hex digits.
        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let digits = s.strip_prefix($prefix).ok_or(ParseIdError { expected: $prefix })?;
                if digits.is_empty() || digits.len() > 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(ParseIdError { expected: $prefix });
                }
                Ok($name(s.to_owned()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// So maps keyed by id can be looked up with a `&str`.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                String::column_result(value).map($name)
            }
        }
    };
}

id_type!(
    /// An agent's id: `ag_` and hex digits, fixed at registration.
    AgentId,
    "ag_"
);
id_type!(
    /// A transaction request's id: `tx_` and hex digits.
    TxId,
    "tx_"
);

/// Text that is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an id of the form `{expected}` and hex digits")]
pub struct ParseIdError {
    expected: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_only_in_their_own_form() {
        assert_eq!("ag_00ff".parse::<AgentId>().unwrap().as_str(), "ag_00ff");
        assert_eq!(AgentId::from_random(&[0, 255]).as_str(), "ag_00ff");
        assert_eq!(TxId::from_random(&[1]).to_string(), "tx_01");
        for bad in ["", "ag_", "tx_00", "ag_xyz", "ag_00/../x", &format!("ag_{}", "0".repeat(65))] {
            assert!(bad.parse::<AgentId>().is_err(), "{bad:?}");
        }
        assert!("ag_00".parse::<TxId>().is_err());
        let json = serde_json::to_string(&TxId::from("tx_ab".to_owned())).unwrap();
        assert_eq!(json, "\"tx_ab\"", "on the wire an id is a plain string");
    }
}
