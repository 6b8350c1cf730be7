//! The store's behaviour, once per backend: each test runs on a home's SQLite file and on a fresh
//! database of a real PostgreSQL (started by the test, see `assegai_e2e::postgres`). The sums the
//! limits read are checked against a full scan of the requests through the store's own typed
//! reads, so the hour buckets cannot drift on either backend.

use alloy_primitives::{Address, U256};
use assegai_e2e::TestEnv;
use assegai_proxy::{
    ids::AgentId,
    store::{LogQuery, NewLog, NewTx, NewUsage, Store, StoreError, now_ms},
    tx::{
        fees::{FeeModel, TxFees},
        limits,
    },
};
use assegai_sdk::{LogLevel, wire::TxStatus};

const HOUR_MS: i64 = 3_600_000;
const TO: &str = "0x00000000000000000000000000000000000000b0";

/// Runs `test` on SQLite, then on PostgreSQL; a failure names the backend.
fn each_backend(test: impl Fn(&TestEnv, &Store)) {
    for (name, env) in [("SQLite", TestEnv::on_sqlite()), ("PostgreSQL", TestEnv::on_postgres())] {
        let store = env.store();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&env, &store)));
        if let Err(panic) = outcome {
            eprintln!("failed on {name}");
            std::panic::resume_unwind(panic);
        }
    }
}

/// What an agent's requests on a chain since `since` count, from every request row.
fn scan(s: &Store, agent: &str, chain: u64, since: i64) -> U256 {
    s.txs(Some(&agent.into()), None, u32::MAX)
        .unwrap()
        .into_iter()
        .filter(|t| t.chain_id == chain && t.created_at >= since)
        .fold(U256::ZERO, |a, t| a + limits::counted(t.status, t.value_wei, t.max_fee_wei, t.fee_wei))
}

fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut seed = seed;
    move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed >> 33
    }
}

fn new_tx(i: usize, agent: &str, chain: u64, value_wei: U256, fees: Option<TxFees>, created_at: i64) -> NewTx {
    NewTx {
        id: format!("tx_{i:04x}").into(),
        agent_id: agent.into(),
        agent_name: agent.into(),
        chain_id: chain,
        to: TO.into(),
        value_wei,
        data: "0x".into(),
        gas_limit: fees.map(|_| 21_000),
        fees,
        action: "send".into(),
        detail: None,
        created_at,
        held_by: Some(format!("host ({agent})")),
        expires_at: Some(created_at + 1_000),
    }
}

/// With fees: pending and approved requests count value and worst-case fee, confirmed ones
/// value and the fee paid, reverted ones the fee alone; the buckets agree with a full scan
/// through inserts, decisions and receipts.
#[test]
fn rolling_sums_with_fees_match_a_full_scan() {
    each_backend(|_, s| {
        let base = 1_700_000_000_000_i64;
        let mut next = rng(11);
        for i in 0..150 {
            let gwei = U256::from(1_000_000_000_u64);
            let max_fee_per_gas = U256::from(1 + next() % 100) * gwei;
            let fees = TxFees {
                model: FeeModel::Eip1559,
                max_fee_per_gas,
                max_priority_fee_per_gas: Some(gwei),
                max_fee_wei: max_fee_per_gas * U256::from(21_000),
            };
            let value = U256::from(next() % 1_000_000) * gwei;
            let tx = new_tx(i, "ag_a", 31337, value, Some(fees), base + (next() % (48 * HOUR_MS as u64)) as i64);
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
        for _ in 0..60 {
            let since = base - HOUR_MS + (next() % (50 * HOUR_MS as u64)) as i64;
            assert_eq!(s.spent_since(&"ag_a".into(), 31337, since).unwrap(), scan(s, "ag_a", 31337, since), "{since}");
        }
    });
}

/// The hour buckets give exactly what a full scan gives, for windows that start anywhere within
/// an hour, through inserts and every kind of decision, per agent and chain.
#[test]
fn rolling_sums_match_a_full_scan() {
    each_backend(|_, s| {
        let base = 1_700_000_000_000_i64;
        let mut next = rng(7);
        let fates = [TxStatus::Approved, TxStatus::Rejected, TxStatus::Expired, TxStatus::Failed];
        for i in 0..200 {
            let agent = if i % 3 == 0 { "ag_b" } else { "ag_a" };
            let chain = if i % 5 == 0 { 1 } else { 31337 };
            let value = U256::from(next() % 1_000_000) * U256::from(1_000_000_000_000_u64);
            let tx = new_tx(i, agent, chain, value, None, base + (next() % (72 * HOUR_MS as u64)) as i64);
            assert!(s.insert_pending_tx(&tx, &[]).unwrap().is_none());
            match next() % 5 {
                0 => {}
                n => {
                    let to = fates[n as usize - 1];
                    assert!(s.decide_tx(&tx.id, TxStatus::Pending, to, None, "t").unwrap());
                    if to == TxStatus::Approved && next().is_multiple_of(2) {
                        let fin = if next().is_multiple_of(3) { TxStatus::Reverted } else { TxStatus::Confirmed };
                        assert!(s.decide_tx(&tx.id, TxStatus::Approved, fin, None, "t").unwrap());
                    }
                }
            }
        }
        // A decision from a status the request is no longer in changes nothing.
        let late = new_tx(999, "ag_a", 31337, U256::from(5), None, base);
        assert!(s.insert_pending_tx(&late, &[]).unwrap().is_none());
        assert!(s.decide_tx(&late.id, TxStatus::Pending, TxStatus::Rejected, None, "t").unwrap());
        assert!(!s.decide_tx(&late.id, TxStatus::Pending, TxStatus::Approved, None, "t").unwrap());
        assert!(
            !s.decide_tx(&"tx_ffff".into(), TxStatus::Pending, TxStatus::Approved, None, "t").unwrap(),
            "no such request"
        );
        assert_eq!(s.tx(&late.id).unwrap().unwrap().status, TxStatus::Rejected);
        for _ in 0..80 {
            let since = base - HOUR_MS + (next() % (74 * HOUR_MS as u64)) as i64;
            for (agent, chain) in [("ag_a", 31337), ("ag_b", 31337), ("ag_a", 1), ("ag_c", 31337)] {
                assert_eq!(
                    s.spent_since(&agent.into(), chain, since).unwrap(),
                    scan(s, agent, chain, since),
                    "{since}"
                );
            }
        }
    });
}

/// A limit holds under concurrency: 40 threads racing 0.1 ETH requests against a 1 ETH window
/// leave exactly 10 pending.
#[test]
fn racing_requests_never_exceed_a_limit() {
    each_backend(|_, s| {
        let eth = U256::from(10).pow(U256::from(18));
        let windows = [limits::SpendWindow { window: limits::Window::Daily, limit: eth }];
        let now = now_ms();
        let fitted: usize = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..40)
                .map(|i| {
                    let tx = new_tx(i, "ag_r", 31337, eth / U256::from(10), None, now);
                    scope.spawn(move || s.insert_pending_tx(&tx, &windows).unwrap().is_none())
                })
                .collect();
            racers.into_iter().map(|r| usize::from(r.join().unwrap())).sum()
        });
        assert_eq!(fitted, 10, "exactly ten fit under the limit");
        assert_eq!(s.txs(Some(&"ag_r".into()), Some(TxStatus::Pending), 100).unwrap().len(), 10);
        assert_eq!(s.spent_since(&"ag_r".into(), 31337, now - 1).unwrap(), eth);
        // Abandoned by a proxy that died: expired by another, and the limit is free again.
        assert_eq!(s.expire_stale_pending(now + 1_001, "abandoned").unwrap().len(), 10);
        assert_eq!(s.spent_since(&"ag_r".into(), 31337, now - 1).unwrap(), U256::ZERO);
    });
}

#[test]
fn agents_run_from_a_directory_keep_their_id_and_their_name() {
    each_backend(|_, s| {
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
    });
}

#[test]
fn upsert_rotates_pauses_revokes_and_removes_with_an_audit_trail() {
    each_backend(|_, s| {
        let (a, created) = s.upsert_agent(&"ag_1".into(), "bot", "{}", None, &[1; 32]).unwrap();
        assert!(created);
        let (b, created) = s.upsert_agent(&"ag_2".into(), "bot", "{}", Some("/x"), &[2; 32]).unwrap();
        assert!(!created);
        assert_eq!(a.id, b.id);
        assert_eq!(b.token_hash, Some([2; 32]));
        assert_eq!(b.source_dir.as_deref(), Some("/x"));
        assert_eq!(s.find_agent("bot").unwrap().unwrap().id, "ag_1");
        assert_eq!(s.find_agent("ag_1").unwrap().unwrap().name, "bot");
        assert!(s.set_paused(&a.id, true, "cli").unwrap());
        assert!(!s.set_paused(&a.id, true, "cli").unwrap(), "already paused");
        assert!(s.agent(&a.id).unwrap().unwrap().paused);
        assert!(!s.revoke_token(&a.id, &[1; 32], "old").unwrap(), "not the current token");
        assert!(s.revoke_token(&a.id, &[2; 32], "leaked").unwrap());
        assert_eq!(s.agent(&a.id).unwrap().unwrap().token_hash, None);
        assert!(s.remove_agent(&"ag_1".into()).unwrap());
        assert!(s.find_agent("ag_1").unwrap().is_none());
        assert!(s.list_agents().unwrap().is_empty());
        let kinds: Vec<_> = s.audit_events(10).unwrap().into_iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            ["agent.registered", "agent.token_rotated", "agent.paused", "agent.token_revoked", "agent.removed"]
        );
        assert_eq!(s.audit_events(2).unwrap().len(), 2, "the newest two");
    });
}

#[test]
fn usage_sums_by_agent_provider_and_model() {
    each_backend(|_, s| {
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
        let day = now.div_euclid(86_400_000) * 86_400_000;
        assert_eq!(s.usage_by_day(None, 0).unwrap(), [(0, 1, 7, 0), (day, 4, 190, 1)]);
        assert!(s.usage_summary(Some(&"ag_2".into()), 0).unwrap().is_empty());
    });
}

#[test]
fn logs_filter_and_follow() {
    each_backend(|_, s| {
        let mk = |agent: &str, level, message: &str| NewLog {
            agent_id: agent.into(),
            agent_name: "bot".into(),
            level,
            message: message.into(),
            data: Some(serde_json::json!({"n": message})),
            created_at: now_ms(),
        };
        s.insert_logs(&[
            mk("ag_1", LogLevel::Info, "a"),
            mk("ag_1", LogLevel::Error, "b"),
            mk("ag_2", LogLevel::Info, "c"),
        ])
        .unwrap();
        let all = s.logs(&LogQuery::default()).unwrap();
        assert_eq!(all.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(all[1].data, Some(serde_json::json!({"n": "b"})));
        let errors = s.logs(&LogQuery { level: Some(LogLevel::Error), ..Default::default() }).unwrap();
        assert_eq!(errors.len(), 1);
        let after = s.logs(&LogQuery { after_id: Some(all[0].id), ..Default::default() }).unwrap();
        assert_eq!(after.len(), 2);
        let last = s.logs(&LogQuery { limit: Some(1), ..Default::default() }).unwrap();
        assert_eq!(last[0].message, "c");
        let mine = s.logs(&LogQuery { agent_id: Some("ag_2".into()), ..Default::default() }).unwrap();
        assert_eq!(mine.len(), 1);
        assert_eq!(s.log_count(None, None).unwrap(), 3);
        assert_eq!(s.log_count(Some(&"ag_1".into()), Some(LogLevel::Info)).unwrap(), 1);
    });
}

#[test]
fn a_stored_manifest_is_parsed_once_and_one_that_no_longer_parses_still_lists() {
    each_backend(|env, s| {
        let manifest = r#"{"name":"a","permissions":{"chains":["eip155:31337"]}}"#;
        s.upsert_agent(&"ag_1".into(), "a", manifest, None, &[1; 32]).unwrap();
        let row = s.agent(&"ag_1".into()).unwrap().unwrap();
        assert_eq!(row.manifest().unwrap().permissions.chains.len(), 1);
        assert_eq!(row.manifest_json, manifest);

        // As if a newer version read an old manifest more strictly.
        env.execute_sql("UPDATE agents SET manifest = ?1 WHERE id = 'ag_1'", &[r#"{"name":"a","nope":1}"#]);
        let rows = s.list_agents().unwrap();
        assert_eq!(rows.len(), 1, "the agent still lists");
        let err = rows[0].manifest().unwrap_err().to_string();
        assert!(err.contains("the stored manifest of `a`"), "the error names the agent: {err}");
    });
}

#[test]
fn allowances_store_the_token_checksummed_and_read_it_back_as_an_address() {
    each_backend(|env, s| {
        let agent: AgentId = "ag_01".into();
        s.upsert_agent(&agent, "a", r#"{"name":"a"}"#, None, &[1; 32]).unwrap();
        let token: Address = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48".parse().unwrap();
        s.set_allowance(&agent, 1, token, "250", "cli").unwrap();
        s.set_allowance(&agent, 1, token, "300", "cli").unwrap();
        let row = s.allowance(&agent, 1, token).unwrap().unwrap();
        assert_eq!((row.token, row.amount.as_str()), (token, "300"), "the later one replaces it");
        assert_eq!(s.allowances(None).unwrap().len(), 1);
        assert_eq!(
            env.query_strings("SELECT token FROM allowances"),
            ["0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"],
            "as EIP-55 writes it"
        );
        // A damaged row is an error, not a zero address.
        env.execute_sql("UPDATE allowances SET token = 'nope'", &[]);
        assert!(s.allowances(Some(&agent)).is_err());
    });
}

/// A stored request reads back with every value in its type, and a damaged one is an error
/// rather than a zero on the approval card.
#[test]
fn requests_read_back_typed_and_a_damaged_one_is_an_error() {
    each_backend(|env, s| {
        let fees = TxFees {
            model: FeeModel::Legacy,
            max_fee_per_gas: U256::from(7),
            max_priority_fee_per_gas: None,
            max_fee_wei: U256::from(7 * 21_000),
        };
        let big = U256::MAX / U256::from(4);
        let tx = new_tx(1, "ag_1", u64::from(u32::MAX) + 5, big, Some(fees), now_ms());
        assert!(s.insert_pending_tx(&tx, &[]).unwrap().is_none());
        let row = s.tx(&tx.id).unwrap().unwrap();
        assert_eq!((row.value_wei, row.chain_id, row.gas_limit), (big, u64::from(u32::MAX) + 5, Some(21_000)));
        assert_eq!((row.fee_model, row.max_fee_wei), (Some(FeeModel::Legacy), Some(U256::from(7 * 21_000))));
        assert_eq!(row.to, TO.parse::<Address>().unwrap());
        s.set_tx_hash(&tx.id, &format!("0x{}", "ab".repeat(32))).unwrap();
        assert!(s.tx(&tx.id).unwrap().unwrap().tx_hash.is_some());
        assert_eq!(s.tx_counts(&"ag_1".into()).unwrap(), [(TxStatus::Pending, 1)]);
        assert_eq!(row.held_by.as_deref(), Some("host (ag_1)"));
        // A proxy starting expires only what it held itself; another host's requests wait on.
        assert!(s.expire_all_pending(Some("host (elsewhere)"), "restart").unwrap().is_empty());
        assert!(
            s.expire_stale_pending(tx.created_at + 1_000, "abandoned").unwrap().is_empty(),
            "its timeout has not ended"
        );
        assert_eq!(s.expire_all_pending(Some("host (ag_1)"), "restart").unwrap(), std::slice::from_ref(&tx.id));
        // One proxy's own database: everything pending, whoever it names.
        let other = new_tx(2, "ag_1", 31337, U256::from(1), None, now_ms());
        assert!(s.insert_pending_tx(&other, &[]).unwrap().is_none());
        assert_eq!(s.expire_all_pending(None, "restart").unwrap(), std::slice::from_ref(&other.id));
        assert_eq!(s.tx(&tx.id).unwrap().unwrap().error.as_deref(), Some("restart"));
        env.execute_sql("UPDATE transactions SET value_wei = 'lots'", &[]);
        assert!(s.tx(&tx.id).is_err(), "a damaged amount is an error");
    });
}
