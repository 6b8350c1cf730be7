//! Native spending limits, in one place: the windows (per transaction, 24 h, 7 d, 30 d), what a
//! request counts against them (its value plus its worst-case fee while it may still be sent, its
//! value plus the fee it actually paid once the receipt is in), and what one more request does to
//! each window. The policy, the store, `assegai approve` and `assegai limits` all ask here; nothing
//! else knows a window's length.

use alloy_primitives::U256;
use assegai_sdk::wire::TxStatus;

use crate::manifest::SpendingLimits;

const DAY_MS: i64 = 86_400_000;

/// A rolling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Any 24 hours.
    Daily,
    /// Any 7 days.
    Weekly,
    /// Any 30 days.
    Monthly,
}

impl Window {
    /// Every window, shortest first.
    pub const ALL: [Window; 3] = [Window::Daily, Window::Weekly, Window::Monthly];

    /// `daily`, `weekly`, `monthly`.
    pub fn name(self) -> &'static str {
        match self {
            Window::Daily => "daily",
            Window::Weekly => "weekly",
            Window::Monthly => "monthly",
        }
    }

    /// The window's length.
    pub fn length_ms(self) -> i64 {
        match self {
            Window::Daily => DAY_MS,
            Window::Weekly => 7 * DAY_MS,
            Window::Monthly => 30 * DAY_MS,
        }
    }

    /// Where the window starts for a request made at `now_ms`.
    pub fn since(self, now_ms: i64) -> i64 {
        now_ms - self.length_ms()
    }

    /// This window's limit in `limits`, in wei.
    pub fn limit(self, limits: &SpendingLimits) -> Option<U256> {
        let amount = match self {
            Window::Daily => &limits.daily,
            Window::Weekly => &limits.weekly,
            Window::Monthly => &limits.monthly,
        };
        amount.as_ref().map(|a| a.base_units())
    }
}

/// A window with a limit, as the store checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendWindow {
    /// Which window.
    pub window: Window,
    /// The limit, in wei.
    pub limit: U256,
}

impl SpendWindow {
    /// `daily`, `weekly` or `monthly`.
    pub fn name(&self) -> &'static str {
        self.window.name()
    }
}

/// The rolling windows `limits` sets, shortest first.
pub fn windows(limits: Option<&SpendingLimits>) -> Vec<SpendWindow> {
    let Some(limits) = limits else { return Vec::new() };
    Window::ALL.into_iter().filter_map(|w| w.limit(limits).map(|limit| SpendWindow { window: w, limit })).collect()
}

/// What a request counts against the limits, in wei: value plus worst-case fee while it is
/// pending or approved (it may still be sent at that price); value plus the fee paid once
/// confirmed; only the fee once reverted (the value stayed, the gas was spent); nothing once it
/// can no longer be sent. Rows from before fees were recorded have neither fee: their value alone.
pub fn counted(status: TxStatus, value: U256, max_fee: Option<U256>, fee: Option<U256>) -> U256 {
    let max_fee = max_fee.unwrap_or_default();
    match status {
        TxStatus::Pending | TxStatus::Approved => value.saturating_add(max_fee),
        TxStatus::Confirmed => value.saturating_add(fee.unwrap_or(max_fee)),
        TxStatus::Reverted => fee.unwrap_or_default(),
        TxStatus::Rejected | TxStatus::Expired | TxStatus::Failed => U256::ZERO,
    }
}

/// What a new request will cost at most: value + worst-case fee; `None` on overflow (which no
/// limit can allow).
pub fn worst_case(value: U256, max_fee: U256) -> Option<U256> {
    value.checked_add(max_fee)
}

/// Why `cost` (value + worst-case fee) breaks the per-transaction limits, if it does.
pub fn per_transaction(limits: Option<&SpendingLimits>, value: U256, max_fee: U256) -> Option<Breach> {
    let limits = limits?;
    if let Some(cap) = limits.max_fee_per_transaction.as_ref().map(|a| a.base_units())
        && max_fee > cap
    {
        return Some(Breach::Fee { max_fee, cap });
    }
    let limit = limits.per_transaction.as_ref()?.base_units();
    match worst_case(value, max_fee) {
        Some(cost) if cost <= limit => None,
        cost => Some(Breach::PerTransaction { cost, limit }),
    }
}

/// A per-transaction limit the request breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breach {
    /// Value + worst-case fee over `per_transaction` (`cost` `None`: it overflows).
    PerTransaction {
        /// Value + worst-case fee.
        cost: Option<U256>,
        /// The limit.
        limit: U256,
    },
    /// The worst-case fee over `max_fee_per_transaction`.
    Fee {
        /// The worst-case fee.
        max_fee: U256,
        /// The manifest's cap.
        cap: U256,
    },
}

/// Whether a window with `spent` (everything it already counts) still fits `cost` under `limit`.
pub fn fits(spent: U256, cost: U256, limit: U256) -> bool {
    spent.checked_add(cost).is_some_and(|total| total <= limit)
}

/// One window before and after a request: what it counted without the request, with it, and
/// the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Impact {
    /// Which window.
    pub window: Window,
    /// Counted without this request.
    pub before: U256,
    /// Counted with it.
    pub after: U256,
    /// The limit.
    pub limit: U256,
}

impl Impact {
    /// Whether the request takes the window over its limit.
    pub fn exceeds(&self) -> bool {
        self.after > self.limit
    }
}

/// The impact of a request costing `cost` on `window`, whose current total is `total`; `included`
/// says whether `total` already counts the request (a pending one does).
pub fn impact(window: SpendWindow, total: U256, cost: U256, included: bool) -> Impact {
    let (before, after) =
        if included { (total.saturating_sub(cost), total) } else { (total, total.saturating_add(cost)) };
    Impact { window: window.window, before, after, limit: window.limit }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    fn eth(milli: u64) -> U256 {
        U256::from(milli) * U256::from(1_000_000_000_000_000u64)
    }

    fn limits(json: serde_json::Value) -> SpendingLimits {
        let m = serde_json::json!({"name": "x", "spending_limits": json});
        Manifest::parse(&m.to_string(), std::path::Path::new("t")).unwrap().spending_limits.unwrap()
    }

    #[test]
    fn every_window_has_its_length_and_limit() {
        let l = limits(serde_json::json!({"daily": "1", "weekly": "2", "monthly": "3"}));
        let w = windows(Some(&l));
        assert_eq!(w.iter().map(SpendWindow::name).collect::<Vec<_>>(), ["daily", "weekly", "monthly"]);
        assert_eq!(w.iter().map(|w| w.limit).collect::<Vec<_>>(), [eth(1000), eth(2000), eth(3000)]);
        assert_eq!(Window::Daily.length_ms(), 86_400_000);
        assert_eq!(Window::Weekly.length_ms(), 7 * 86_400_000);
        assert_eq!(Window::Monthly.length_ms(), 30 * 86_400_000);
        assert_eq!(Window::Daily.since(100_000_000), 100_000_000 - 86_400_000);
        let only_weekly = limits(serde_json::json!({"weekly": "2"}));
        assert_eq!(windows(Some(&only_weekly)).len(), 1);
        assert!(windows(None).is_empty());
    }

    #[test]
    fn pending_counts_the_worst_case_and_settled_the_fee_paid() {
        let (v, max, paid) = (eth(100), eth(5), eth(1));
        assert_eq!(counted(TxStatus::Pending, v, Some(max), None), eth(105));
        assert_eq!(counted(TxStatus::Approved, v, Some(max), None), eth(105));
        assert_eq!(counted(TxStatus::Confirmed, v, Some(max), Some(paid)), eth(101));
        assert_eq!(counted(TxStatus::Confirmed, v, Some(max), None), eth(105), "no receipt read: worst case");
        assert_eq!(counted(TxStatus::Reverted, v, Some(max), Some(paid)), eth(1), "a revert still pays gas");
        for gone in [TxStatus::Rejected, TxStatus::Expired, TxStatus::Failed] {
            assert_eq!(counted(gone, v, Some(max), Some(paid)), U256::ZERO);
        }
        // Rows from before fees were recorded.
        assert_eq!(counted(TxStatus::Confirmed, v, None, None), v);
        assert_eq!(counted(TxStatus::Reverted, v, None, None), U256::ZERO);
    }

    #[test]
    fn overflow_never_lifts_a_limit() {
        assert_eq!(worst_case(U256::MAX, U256::from(1)), None);
        assert!(!fits(U256::MAX, U256::from(1), U256::MAX));
        assert!(fits(eth(1), eth(1), eth(2)));
        assert!(!fits(eth(1), eth(2), eth(2)));
        assert_eq!(counted(TxStatus::Pending, U256::MAX, Some(U256::MAX), None), U256::MAX, "saturates");
        let l = limits(serde_json::json!({"per_transaction": "1"}));
        assert_eq!(
            per_transaction(Some(&l), U256::MAX, U256::from(1)),
            Some(Breach::PerTransaction { cost: None, limit: eth(1000) })
        );
    }

    #[test]
    fn per_transaction_counts_the_fee_and_the_fee_cap() {
        let l = limits(serde_json::json!({"per_transaction": "0.1", "max_fee_per_transaction": "0.01"}));
        assert_eq!(per_transaction(Some(&l), eth(90), eth(10)), None, "exactly at the limit");
        assert_eq!(
            per_transaction(Some(&l), eth(91), eth(10)),
            Some(Breach::PerTransaction { cost: Some(eth(101)), limit: eth(100) })
        );
        assert_eq!(per_transaction(Some(&l), eth(1), eth(11)), Some(Breach::Fee { max_fee: eth(11), cap: eth(10) }));
        assert_eq!(per_transaction(None, U256::MAX, U256::MAX), None);
    }

    #[test]
    fn impact_before_and_after() {
        let w = SpendWindow { window: Window::Daily, limit: eth(1000) };
        let pending = impact(w, eth(600), eth(200), true);
        assert_eq!((pending.before, pending.after, pending.exceeds()), (eth(400), eth(600), false));
        let new = impact(w, eth(900), eth(200), false);
        assert_eq!((new.before, new.after, new.exceeds()), (eth(900), eth(1100), true));
    }
}
