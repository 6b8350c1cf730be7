//! The store's own tests, against a real SQLite file.

use alloy_primitives::U256;
use assegai_sdk::{LogLevel, wire::TxStatus};
use rusqlite::params;

use super::{
    spend::{HOUR_MS, VALUE_STATUSES, rebuild_spend_hours},
    *,
};
use crate::{
    ids::AgentId,
    tx::{fees::TxFees, limits},
};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("t.db")).unwrap();
    (dir, s)
}

#[test]
fn migrations_are_valid() {
    MIGRATIONS.validate().unwrap();
}

#[test]
fn a_new_database_opened_by_many_at_once_is_migrated_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    let openers: Vec<_> = (0..8)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || Store::open(&path).map(drop).map_err(|e| e.to_string()))
        })
        .collect();
    for o in openers {
        o.join().unwrap().unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert!(s.list_agents().unwrap().is_empty());
}

/// With fees: pending and approved requests count value and worst-case fee, confirmed ones
/// value and the fee paid, reverted ones the fee alone; the buckets agree with a full scan
/// through inserts, decisions and receipts.
#[test]
fn rolling_sums_with_fees_match_a_full_scan() {
    fn scan(s: &Store, agent: &str, since: i64) -> U256 {
        let conn = s.conn();
        let mut stmt = conn
            .prepare(
                "SELECT status, value_wei, max_fee_wei, fee_wei FROM transactions WHERE agent_id = ?1
                 AND created_at >= ?2",
            )
            .unwrap();
        let rows = stmt
            .query_map(params![agent, since], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .unwrap();
        let wei = |t: &str| U256::from_str_radix(t, 10).unwrap();
        rows.map(Result::unwrap).fold(U256::ZERO, |a, (status, v, max, fee)| {
            a + limits::counted(status.parse().unwrap(), wei(&v), max.as_deref().map(wei), fee.as_deref().map(wei))
        })
    }
    let (_d, s) = store();
    let base = 1_700_000_000_000_i64;
    let mut seed = 11_u64;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    };
    for i in 0..300 {
        let gwei = U256::from(1_000_000_000_u64);
        let max_fee_per_gas = U256::from(1 + next() % 100) * gwei;
        let fees = TxFees {
            model: crate::tx::fees::FeeModel::Eip1559,
            max_fee_per_gas,
            max_priority_fee_per_gas: Some(gwei),
            max_fee_wei: max_fee_per_gas * U256::from(21_000),
        };
        let tx = NewTx {
            id: format!("tx_{i}").into(),
            agent_id: "ag_a".into(),
            agent_name: "a".into(),
            chain_id: 31337,
            to: "0x0".into(),
            value_wei: U256::from(next() % 1_000_000) * gwei,
            data: "0x".into(),
            gas_limit: Some(21_000),
            fees: Some(fees),
            action: "send".into(),
            detail: None,
            created_at: base + (next() % (48 * HOUR_MS as u64)) as i64,
        };
        assert!(s.insert_pending_tx(&tx, &[]).unwrap().is_none());
        match next() % 4 {
            0 => {}
            1 => assert!(s.decide_tx(&tx.id, TxStatus::Pending, TxStatus::Rejected, None, "t").unwrap()),
            _ => {
                assert!(s.decide_tx(&tx.id, TxStatus::Pending, TxStatus::Approved, None, "t").unwrap());
                let paid = fees.max_fee_wei / U256::from(1 + next() % 4);
                match next() % 3 {
                    0 => {}
                    1 => assert!(s.settle_tx(&tx.id, TxStatus::Confirmed, paid, None).unwrap()),
                    _ => assert!(s.settle_tx(&tx.id, TxStatus::Reverted, paid, Some("reverted")).unwrap()),
                }
            }
        }
    }
    for _ in 0..100 {
        let since = base - HOUR_MS + (next() % (50 * HOUR_MS as u64)) as i64;
        assert_eq!(s.spent_since(&"ag_a".into(), 31337, since).unwrap(), scan(&s, "ag_a", since), "{since}");
    }
}

/// The hour buckets give exactly what a full scan of `transactions` gives, for windows that
/// start anywhere within an hour, through inserts and every kind of decision.
#[test]
fn rolling_sums_match_a_full_scan() {
    fn scan(s: &Store, agent: &str, chain: u64, since: i64) -> U256 {
        let conn = s.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT value_wei FROM transactions WHERE agent_id = ?1 AND chain_id = ?2 AND created_at >= ?3
                 AND status IN {VALUE_STATUSES}"
            ))
            .unwrap();
        let rows = stmt.query_map(params![agent, chain as i64, since], |r| r.get::<_, String>(0)).unwrap();
        rows.map(|v| U256::from_str_radix(&v.unwrap(), 10).unwrap()).fold(U256::ZERO, |a, b| a + b)
    }
    let (_d, s) = store();
    let base = 1_700_000_000_000_i64;
    let mut seed = 7_u64;
    let mut next = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    };
    let fates = [TxStatus::Approved, TxStatus::Rejected, TxStatus::Expired, TxStatus::Failed];
    for i in 0..400 {
        let agent = if i % 3 == 0 { "ag_b" } else { "ag_a" };
        let chain = if i % 5 == 0 { 1 } else { 31337 };
        let tx = NewTx {
            id: format!("tx_{i}").into(),
            agent_id: agent.into(),
            agent_name: agent.into(),
            chain_id: chain,
            to: "0x0".into(),
            value_wei: U256::from(next() % 1_000_000) * U256::from(1_000_000_000_000_u64),
            data: "0x".into(),
            gas_limit: None,
            fees: None,
            action: "send".into(),
            detail: None,
            created_at: base + (next() % (72 * HOUR_MS as u64)) as i64,
        };
        assert!(s.insert_pending_tx(&tx, &[]).unwrap().is_none());
        match next() % 5 {
            0 => {}
            n => {
                let to = fates[n as usize - 1];
                assert!(s.decide_tx(&tx.id, TxStatus::Pending, to, None, "t").unwrap());
                if to == TxStatus::Approved && next() % 2 == 0 {
                    let fin = if next() % 3 == 0 { TxStatus::Reverted } else { TxStatus::Confirmed };
                    assert!(s.decide_tx(&tx.id, TxStatus::Approved, fin, None, "t").unwrap());
                }
            }
        }
    }
    for _ in 0..200 {
        let since = base - HOUR_MS + (next() % (74 * HOUR_MS as u64)) as i64;
        for (agent, chain) in [("ag_a", 31337), ("ag_b", 31337), ("ag_a", 1), ("ag_c", 31337)] {
            assert_eq!(s.spent_since(&agent.into(), chain, since).unwrap(), scan(&s, agent, chain, since), "{since}");
        }
    }
    // A rebuild (what migration 0005 does for older databases) gives the same buckets.
    let before: Vec<(String, i64, i64, String)> = {
        let conn = s.conn();
        let mut st = conn.prepare("SELECT * FROM spend_hours WHERE wei != '0' ORDER BY 1, 2, 3").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect()
    };
    let conn = s.conn();
    rebuild_spend_hours(&mut &*conn).unwrap();
    let mut st = conn.prepare("SELECT * FROM spend_hours ORDER BY 1, 2, 3").unwrap();
    let after: Vec<(String, i64, i64, String)> =
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect();
    assert_eq!(before, after);
}

#[test]
fn agents_run_from_a_directory_keep_their_id_and_their_name() {
    let (_d, s) = store();
    let (a, _) = s.upsert_agent(&"ag_1".into(), "bot", "{}", Some("/a"), &[1; 32]).unwrap();
    // Renamed in its manifest: same agent.
    let (b, created) = s.upsert_agent(&"ag_2".into(), "robot", "{}", Some("/a"), &[2; 32]).unwrap();
    assert!(!created);
    assert_eq!((b.id.as_str(), b.name.as_str()), (a.id.as_str(), "robot"));
    // Another directory cannot take the name.
    let e = s.upsert_agent(&"ag_3".into(), "robot", "{}", Some("/b"), &[3; 32]).unwrap_err();
    assert!(e.to_string().contains("already runs from /a"), "{e}");
    // Nor can the first directory take a name another agent has.
    s.upsert_agent(&"ag_4".into(), "other", "{}", None, &[4; 32]).unwrap();
    let e = s.upsert_agent(&"ag_5".into(), "other", "{}", Some("/a"), &[5; 32]).unwrap_err();
    assert!(matches!(e, StoreError::NameTaken(_)), "{e}");
    // An agent added by name only is adopted by the first directory that runs it.
    let (c, created) = s.upsert_agent(&"ag_6".into(), "other", "{}", Some("/c"), &[6; 32]).unwrap();
    assert!(!created);
    assert_eq!((c.id.as_str(), c.source_dir.as_deref()), ("ag_4", Some("/c")));
}

#[test]
fn upsert_rotates_and_keeps_the_id() {
    let (_d, s) = store();
    let (a, created) = s.upsert_agent(&"ag_1".into(), "bot", "{}", None, &[1; 32]).unwrap();
    assert!(created);
    let (b, created) = s.upsert_agent(&"ag_2".into(), "bot", "{}", Some("/x"), &[2; 32]).unwrap();
    assert!(!created);
    assert_eq!(a.id, b.id);
    assert_eq!(b.token_hash, Some([2; 32]));
    assert_eq!(b.source_dir.as_deref(), Some("/x"));
    assert_eq!(s.find_agent("bot").unwrap().unwrap().id, "ag_1");
    assert!(s.remove_agent(&"ag_1".into()).unwrap());
    assert!(s.find_agent("ag_1").unwrap().is_none());
    let kinds: Vec<_> = s.audit_events(10).unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["agent.registered", "agent.token_rotated", "agent.removed"]);
}

#[test]
fn usage_sums_by_agent_provider_and_model() {
    let (_d, s) = store();
    let row = |model: &str, cost: Option<u64>, at: i64| NewUsage {
        agent_id: "ag_1".into(),
        agent_name: "bot".into(),
        provider: "openai",
        model: Some(model.into()),
        input_tokens: 10,
        output_tokens: 5,
        cache_read_tokens: 2,
        cache_write_tokens: 0,
        cost_nano_usd: cost,
        latency_ms: 3,
        status: 200,
        streamed: false,
        estimated: false,
        created_at: at,
    };
    let now = now_ms();
    s.insert_usage(&[
        row("gpt-4o", Some(100), now),
        row("gpt-4o", Some(50), now),
        row("mystery", None, now),
        row("gpt-4o", Some(7), 0),
    ])
    .unwrap();
    let sum = s.usage_summary(None, now - 1000).unwrap();
    assert_eq!(sum.len(), 2);
    let gpt = sum.iter().find(|r| r.model.as_deref() == Some("gpt-4o")).unwrap();
    assert_eq!((gpt.calls, gpt.input_tokens, gpt.cost_nano_usd, gpt.unpriced_calls), (2, 20, 150, 0));
    let mystery = sum.iter().find(|r| r.model.as_deref() == Some("mystery")).unwrap();
    assert_eq!((mystery.cost_nano_usd, mystery.unpriced_calls), (0, 1));
    assert_eq!(s.ai_spend_since(&"ag_1".into(), now - 1000).unwrap(), 150);
    assert_eq!(s.ai_spend_since(&"ag_1".into(), 0).unwrap(), 157);
    // Estimated calls are counted in a row of their own, and spent all the same.
    let mut estimate = row("gpt-4o", Some(40), now);
    estimate.estimated = true;
    s.insert_usage(&[estimate]).unwrap();
    let sum = s.usage_summary(Some(&"ag_1".into()), now - 1000).unwrap();
    let flags: Vec<_> = sum.iter().map(|r| (r.model.as_deref(), r.estimated, r.calls)).collect();
    assert_eq!(flags, [(Some("gpt-4o"), false, 2), (Some("gpt-4o"), true, 1), (Some("mystery"), false, 1)]);
    assert_eq!(s.ai_spend_since(&"ag_1".into(), now - 1000).unwrap(), 190);
    // Per minute, for the budget ledger: the unpriced row is not spend.
    let minute = now.div_euclid(60_000) * 60_000;
    assert_eq!(s.ai_spend_by_minute(1).unwrap(), [("ag_1".to_owned(), minute, 190)]);
    assert_eq!(s.ai_spend_by_minute(0).unwrap(), [("ag_1".to_owned(), 0, 7), ("ag_1".to_owned(), minute, 190)]);
}

#[test]
fn logs_filter_and_follow() {
    let (_d, s) = store();
    let mk = |level, message: &str| NewLog {
        agent_id: "ag_1".into(),
        agent_name: "bot".into(),
        level,
        message: message.into(),
        data: None,
        created_at: now_ms(),
    };
    s.insert_logs(&[mk(LogLevel::Info, "a"), mk(LogLevel::Error, "b"), mk(LogLevel::Info, "c")]).unwrap();
    let all = s.logs(&LogQuery::default()).unwrap();
    assert_eq!(all.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
    let errors = s.logs(&LogQuery { level: Some(LogLevel::Error), ..Default::default() }).unwrap();
    assert_eq!(errors.len(), 1);
    let after = s.logs(&LogQuery { after_id: Some(all[0].id), ..Default::default() }).unwrap();
    assert_eq!(after.len(), 2);
    let last = s.logs(&LogQuery { limit: Some(1), ..Default::default() }).unwrap();
    assert_eq!(last[0].message, "c");
}

#[test]
fn a_stored_manifest_is_parsed_once_and_one_that_no_longer_parses_still_lists() {
    let (_d, s) = store();
    let manifest = r#"{"name":"a","permissions":{"chains":["eip155:31337"]}}"#;
    s.upsert_agent(&"ag_1".into(), "a", manifest, None, &[1; 32]).unwrap();
    let row = s.agent(&"ag_1".into()).unwrap().unwrap();
    assert_eq!(row.manifest().unwrap().permissions.chains.len(), 1);
    assert_eq!(row.manifest_json, manifest);

    // As if a newer version read an old manifest more strictly.
    s.conn().execute("UPDATE agents SET manifest = ?1 WHERE id = 'ag_1'", [r#"{"name":"a","nope":1}"#]).unwrap();
    let rows = s.list_agents().unwrap();
    assert_eq!(rows.len(), 1, "the agent still lists");
    let err = rows[0].manifest().unwrap_err().to_string();
    assert!(err.contains("the stored manifest of `a`"), "the error names the agent: {err}");
}

#[test]
fn allowances_store_the_token_checksummed_and_read_it_back_as_an_address() {
    let (_d, s) = store();
    let agent: AgentId = "ag_01".into();
    s.upsert_agent(&agent, "a", r#"{"name":"a"}"#, None, &[1; 32]).unwrap();
    let token: alloy_primitives::Address = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48".parse().unwrap();
    s.set_allowance(&agent, 1, token, "250", "cli").unwrap();
    let row = s.allowance(&agent, 1, token).unwrap().unwrap();
    assert_eq!((row.token, row.amount.as_str()), (token, "250"));
    let text: String = s.conn().query_row("SELECT token FROM allowances", [], |r| r.get(0)).unwrap();
    assert_eq!(text, "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "as EIP-55 writes it");
    // A damaged row is an error, not a zero address.
    s.conn().execute("UPDATE allowances SET token = 'nope'", []).unwrap();
    assert!(s.allowances(Some(&agent)).is_err());
}
