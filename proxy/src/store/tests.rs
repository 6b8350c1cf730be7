//! SQLite's own tests: its migrations. What the store does, on both backends, is tested in
//! `tests/tests/store.rs`.

use alloy_primitives::U256;
use assegai_sdk::wire::TxStatus;

use super::{
    spend::{HOUR_MS, rebuild_spend_hours},
    *,
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

/// Migration 0005 fills the hour buckets from the requests stored before it; run on a database
/// whose buckets were kept request by request, it gives the same buckets. (The buckets against a
/// full scan, on both backends: `tests/tests/store.rs`.)
#[test]
fn rebuilding_the_hour_buckets_gives_the_buckets_kept_request_by_request() {
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
            held_by: None,
            expires_at: None,
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
    let before: Vec<(String, i64, i64, String)> = {
        let conn = s.conn();
        let mut st = conn.prepare("SELECT * FROM spend_hours WHERE wei != '0' ORDER BY 1, 2, 3").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect()
    };
    assert!(before.len() > 50, "the requests filled many buckets");
    let conn = s.conn();
    rebuild_spend_hours(&mut &*conn).unwrap();
    let mut st = conn.prepare("SELECT * FROM spend_hours ORDER BY 1, 2, 3").unwrap();
    let after: Vec<(String, i64, i64, String)> =
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap().map(Result::unwrap).collect();
    assert_eq!(before, after);
}
