//! The PostgreSQL backend against a real server (started by the test, see
//! `assegai_e2e::postgres`): the schema is migrated exactly once however many proxies start
//! together, a database from a newer Assegai is refused, and a server that cannot be reached is a
//! clear error that does not repeat the password.

use assegai_e2e::postgres::Postgres;
use assegai_proxy::store::{StoreError, postgres as pg};

#[test]
fn proxies_starting_together_migrate_once() {
    let server = Postgres::start();
    let url = server.database("together");
    let results: Vec<Vec<i32>> = std::thread::scope(|s| {
        let starts: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let mut client = pg::connect(&url).unwrap();
                    pg::migrate(&mut client).unwrap()
                })
            })
            .collect();
        starts.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: Vec<i32> = pg::MIGRATIONS.iter().map(|(v, _, _)| *v).collect();
    assert_eq!(results.iter().filter(|r| **r == all).count(), 1, "one start applied everything: {results:?}");
    assert_eq!(results.iter().filter(|r| r.is_empty()).count(), 7, "the others found it done: {results:?}");

    let mut client = pg::connect(&url).unwrap();
    let versions: Vec<i32> = client
        .query("SELECT version FROM assegai_migrations ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, all);
    // The schema is there and works: a row in each of two tables that refer to each other.
    client
        .execute(
            "INSERT INTO agents (id, name, manifest, created_at, updated_at) VALUES ('ag_01', 'a', '{}', 1, 1)",
            &[],
        )
        .unwrap();
    client
        .execute("INSERT INTO agent_tokens (agent_id, token_hash, created_at) VALUES ('ag_01', '\\x00', 1)", &[])
        .unwrap();
    let refused =
        client.execute("INSERT INTO agent_tokens (agent_id, token_hash, created_at) VALUES ('ag_02', '\\x00', 1)", &[]);
    assert!(refused.is_err(), "a token for an agent that does not exist is refused");
    // A later start changes nothing.
    assert!(pg::migrate(&mut client).unwrap().is_empty());
}

#[test]
fn a_database_from_a_newer_assegai_is_refused() {
    let server = Postgres::start();
    let url = server.database("newer");
    let mut client = pg::connect(&url).unwrap();
    pg::migrate(&mut client).unwrap();
    client
        .execute("INSERT INTO assegai_migrations (version, name, applied_at) VALUES (999, 'future', 1)", &[])
        .unwrap();
    let err = pg::migrate(&mut client).unwrap_err();
    assert!(matches!(err, StoreError::NewerSchema { found: 999, .. }), "{err}");
    assert!(err.to_string().contains("upgrade Assegai"), "the message says what to do: {err}");
    // The lock was released: another client can take it at once.
    let mut other = pg::connect(&url).unwrap();
    let got: bool = other.query_one("SELECT pg_try_advisory_lock($1)", &[&pg::MIGRATION_LOCK]).unwrap().get(0);
    assert!(got, "the migration lock is not left held");
}

#[test]
fn a_server_that_cannot_be_reached_is_a_clear_error_without_the_password() {
    let port = assegai_e2e::free_port();
    let url = format!("postgres://assegai:sekrit-pass@127.0.0.1:{port}/team");
    let err = pg::connect(&url).map(drop).unwrap_err().to_string();
    assert!(err.starts_with("PostgreSQL: "), "{err}");
    assert!(!err.contains("sekrit"), "the password is not repeated: {err}");
}

/// Two hosts of a team on one database: an agent registered on one is listed on the other, and
/// `doctor` says the database is shared (and what is missing: a password, shared rate limits).
#[test]
fn two_homes_on_one_database_see_the_same_agents() {
    let a = assegai_e2e::TestEnv::on_postgres();
    let b = assegai_e2e::TestEnv::beside(&a);
    let (id, _) = a.add_agent("teamwork", None);
    let listed: serde_json::Value = serde_json::from_str(&b.run_ok(&["agents", "list", "--json"])).unwrap();
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    for home in [a.home(), b.home()] {
        assert!(!home.join("assegai.db").exists(), "no SQLite file beside a shared database");
    }
    let doctor = b.run(&["doctor", "--json"]);
    let checks: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let database = checks["checks"].as_array().unwrap().iter().find(|c| c["check"] == "database").unwrap();
    assert_eq!(database["level"], "warn", "{database}");
    assert!(database["detail"].as_str().unwrap().contains("without a password"), "{database}");

    // With a password (the test server trusts loopback, so any will do) but no shared rate
    // limits: the warning is the other one, and the password is not shown.
    let with_password = a.database_url().unwrap().replace("postgres://assegai@", "postgres://assegai:sekrit-pw@");
    let doctor = b.cmd(&["doctor", "--json"]).env(assegai_sdk::env::DATABASE_URL, &with_password).output().unwrap();
    assert!(!String::from_utf8_lossy(&doctor.stdout).contains("sekrit"));
    let checks: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let database = checks["checks"].as_array().unwrap().iter().find(|c| c["check"] == "database").unwrap();
    assert_eq!(database["level"], "warn", "{database}");
    assert!(database["detail"].as_str().unwrap().contains("N times the rate"), "{database}");
    assert!(database["fix"].as_str().unwrap().contains("redis_url"), "{database}");
}

/// A shared database that does not answer: every command that needs it fails at once with the
/// reason, never repeats the password, and never falls back to a private SQLite file.
#[test]
fn an_unreachable_shared_database_is_an_error_not_a_fallback() {
    let env = assegai_e2e::TestEnv::on_sqlite();
    let url = format!("postgres://assegai:sekrit-pass@127.0.0.1:{}/team", assegai_e2e::free_port());
    for args in [&["agents", "list"][..], &["approve", "--list"], &["txs"], &["agents", "add", "x"]] {
        let out = env.cmd(args).env(assegai_sdk::env::DATABASE_URL, &url).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(err.contains("shared database") && err.contains("PostgreSQL"), "{args:?}: {err}");
        assert!(!err.contains("sekrit") && !String::from_utf8_lossy(&out.stdout).contains("sekrit"), "{err}");
        assert!(!env.home().join("assegai.db").exists(), "{args:?} fell back to SQLite");
    }
    let out = env.cmd(&["config", "--json"]).env(assegai_sdk::env::DATABASE_URL, &url).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("sekrit"), "{text}");
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let setting = shown["settings"].as_array().unwrap().iter().find(|s| s["key"] == "database_url").unwrap();
    assert_eq!(setting["source"], "environment", "{setting}");
    assert!(setting["value"].as_str().unwrap().starts_with("postgres://127.0.0.1:"), "{setting}");
    let bad =
        env.cmd(&["agents", "list"]).env(assegai_sdk::env::DATABASE_URL, "mysql://u:sekrit@h/db").output().unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("ASSEGAI_DATABASE_URL") && !err.contains("sekrit"), "{err}");
}
