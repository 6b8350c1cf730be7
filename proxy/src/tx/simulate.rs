//! What a request would do, before a person is asked: simulated on the signing node
//! (`eth_simulateV1` with `traceTransfers`, which reports native transfers as `Transfer` logs of
//! the pseudo-token 0xEeee…EEeE), and read as the balance changes of the user's wallet. A call
//! that would revert is refused at once with its decoded reason. A node without `eth_simulateV1`
//! gets a plain `eth_call` (still refusing a revert), and the card says "not simulated" rather
//! than guessing.

use alloy::{
    network::TransactionBuilder,
    providers::Provider,
    rpc::types::{
        TransactionRequest,
        simulate::{SimBlock, SimulatePayload},
    },
};
use alloy_primitives::{Address, B256, Bytes, U256, address, b256};
use serde_json::{Value, json};

use crate::{Error, Result, tx::fees::describe};

/// The pseudo-token `traceTransfers` reports native value moves as.
const NATIVE: Address = address!("0xEeeeeEeeeEeEeeEeEeEeeEEEeeeeEeeeeeeeEEeE");
/// `Transfer(address,address,uint256)`.
const TRANSFER: B256 = b256!("0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");

/// What the request is.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The wallet that will sign; without one nothing can be simulated for it.
    pub from: Option<Address>,
    /// Recipient or contract.
    pub to: Address,
    /// Native value.
    pub value: U256,
    /// Calldata.
    pub data: &'a Bytes,
    /// The gas limit that will be signed.
    pub gas_limit: u64,
}

/// One token's change in the wallet: `gained` − `lost`, base units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The token contract (`None`: the native currency).
    pub token: Option<Address>,
    /// Received.
    pub gained: U256,
    /// Sent.
    pub lost: U256,
}

impl Change {
    /// `-25000000`, `+1`, `0`: the net change as signed decimal text.
    pub fn signed(&self) -> String {
        if self.lost > self.gained {
            format!("-{}", self.lost - self.gained)
        } else if self.gained > self.lost {
            format!("+{}", self.gained - self.lost)
        } else {
            "0".to_owned()
        }
    }
}

/// Simulates `call`; `Ok(json)` is the `simulation` object for the card (or `null` with a reason
/// when the node cannot simulate), `Err` a refusal (it would revert).
pub async fn simulate(provider: &impl Provider, call: Call<'_>) -> Result<(Value, Option<String>)> {
    let Some(from) = call.from else {
        return Ok((Value::Null, Some("not simulated: no wallet signs on this chain".into())));
    };
    let request = TransactionRequest::default()
        .with_from(from)
        .with_to(call.to)
        .with_value(call.value)
        .with_input(call.data.clone())
        .with_gas_limit(call.gas_limit);
    let payload = SimulatePayload::default().extend(SimBlock::default().call(request.clone())).with_trace_transfers();
    let blocks = match provider.simulate(&payload).await {
        Ok(blocks) => blocks,
        Err(e) if unsupported(&e) => {
            // No simulation here: at least a revert is caught.
            if let Err(e) = provider.call(request).await {
                return Err(Error::Policy(format!("Transaction would revert: {}", describe(&e))));
            }
            return Ok((Value::Null, Some("not simulated: the node has no eth_simulateV1".into())));
        }
        Err(e) => return Ok((Value::Null, Some(format!("not simulated: {}", describe(&e))))),
    };
    let Some(result) = blocks.first().and_then(|b| b.calls.first()) else {
        return Ok((Value::Null, Some("not simulated: the node returned no result".into())));
    };
    if !result.status {
        let reason = alloy_sol_types::decode_revert_reason(&result.return_data)
            .or_else(|| result.error.as_ref().map(|e| e.message.clone()))
            .unwrap_or_else(|| "no reason given".into());
        return Err(Error::Policy(format!("Transaction would revert: {}", crate::sanitize::quote(&reason, 200))));
    }
    let mut changes: Vec<Change> = Vec::new();
    for log in &result.logs {
        let topics = log.topics();
        if topics.len() != 3 || topics[0] != TRANSFER || log.data().data.len() != 32 {
            continue;
        }
        let (sender, receiver) = (Address::from_word(topics[1]), Address::from_word(topics[2]));
        if sender != from && receiver != from {
            continue;
        }
        let amount = U256::from_be_slice(&log.data().data);
        let token = (log.address() != NATIVE).then_some(log.address());
        let i = changes.iter().position(|c| c.token == token).unwrap_or_else(|| {
            changes.push(Change { token, gained: U256::ZERO, lost: U256::ZERO });
            changes.len() - 1
        });
        let change = &mut changes[i];
        if sender == from {
            change.lost = change.lost.saturating_add(amount);
        }
        if receiver == from {
            change.gained = change.gained.saturating_add(amount);
        }
    }
    let native = changes.iter().find(|c| c.token.is_none()).map_or_else(|| "0".to_owned(), Change::signed);
    let tokens: Vec<Value> = changes
        .iter()
        .filter_map(|c| c.token.map(|t| json!({"address": t.to_checksum(None), "change": c.signed()})))
        .collect();
    Ok((json!({"native_wei": native, "tokens": tokens, "gas_used": result.gas_used}), None))
}

/// Whether the node does not know `eth_simulateV1` (method not found, or says it is unsupported).
fn unsupported(e: &alloy::transports::TransportError) -> bool {
    e.as_error_resp().is_some_and(|r| {
        r.code == -32601 || r.message.to_ascii_lowercase().contains("not supported") || r.message.contains("not found")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_changes() {
        let c = |gained: u64, lost: u64| Change { token: None, gained: U256::from(gained), lost: U256::from(lost) };
        assert_eq!(c(0, 25).signed(), "-25");
        assert_eq!(c(30, 5).signed(), "+25");
        assert_eq!(c(7, 7).signed(), "0");
    }
}
