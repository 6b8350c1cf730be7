//! Fees fixed when a request is made: what the person sees on the card is what is signed, and
//! what the spending limits count. Read from the signing RPC through alloy (its EIP-1559
//! estimator over `eth_feeHistory`, `eth_gasPrice` on chains without a base fee), after checking
//! that the RPC is the chain it is named for; capped by `config.toml` (or the defaults), so a node
//! that lies about fees cannot make a transfer cost more than the user allowed.

use alloy::{eips::BlockNumberOrTag, network::TransactionBuilder, providers::Provider, rpc::types::TransactionRequest};
use alloy_primitives::{Address, Bytes, U256};
use assegai_sdk::ChainId;
use serde_json::{Value, json};

use crate::{Error, Result, config::FeeCaps, units::format_units};

/// How the fee is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeeModel {
    /// EIP-1559: max fee and max priority fee per gas.
    Eip1559,
    /// A chain without a base fee: one gas price (stored as the max fee per gas).
    Legacy,
}

impl FeeModel {
    /// `eip1559` or `legacy`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            FeeModel::Eip1559 => "eip1559",
            FeeModel::Legacy => "legacy",
        }
    }

    /// The inverse of [`FeeModel::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "eip1559" => Some(FeeModel::Eip1559),
            "legacy" => Some(FeeModel::Legacy),
            _ => None,
        }
    }
}

/// The fee fields of a request, fixed before a person sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxFees {
    /// EIP-1559 or legacy.
    pub model: FeeModel,
    /// Max fee per gas (legacy: the gas price), wei.
    pub max_fee_per_gas: U256,
    /// Max priority fee per gas, wei (EIP-1559 only).
    pub max_priority_fee_per_gas: Option<U256>,
    /// The worst case: gas limit × max fee per gas, wei.
    pub max_fee_wei: U256,
}

/// The gas limit and fees of a request, with what the approver should know about them.
#[derive(Debug, Clone)]
pub struct Fixed {
    /// The gas limit that will be signed.
    pub gas_limit: u64,
    /// The fees that will be signed.
    pub fees: TxFees,
    /// For `detail.gas` (requested, estimate, limit, block gas limit) and `detail.fee`.
    pub detail: Value,
}

/// What the agent asked for, as far as gas goes.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The chain the request names.
    pub chain: ChainId,
    /// The wallet that will sign (for the estimate).
    pub from: Option<Address>,
    /// Recipient or contract.
    pub to: Address,
    /// Native value.
    pub value: U256,
    /// Calldata.
    pub data: &'a Bytes,
    /// The agent's gas limit, if it gave one.
    pub gas_limit: Option<u64>,
}

/// Reads the chain id, the latest block, a gas estimate and the fees from `provider`, and fixes
/// the request's gas limit and fees, refusing what breaks `caps`.
pub async fn fix(provider: &impl Provider, ask: Ask<'_>, caps: FeeCaps) -> Result<Fixed> {
    let node = |e: alloy::transports::TransportError| Error::BadUpstream(describe(&e));
    let reported = provider.get_chain_id().await.map_err(node)?;
    if reported != ask.chain.id() {
        return Err(Error::ChainIdMismatch { reported, expected: ask.chain });
    }
    let block = provider
        .get_block_by_number(BlockNumberOrTag::Latest)
        .await
        .map_err(node)?
        .ok_or_else(|| Error::BadUpstream("the node has no latest block".into()))?;
    let block_gas_limit = block.header.gas_limit;
    let base_fee = block.header.base_fee_per_gas;

    let mut call = TransactionRequest::default().with_to(ask.to).with_value(ask.value).with_input(ask.data.clone());
    if let Some(from) = ask.from {
        call = call.with_from(from);
    }
    let estimate = provider.estimate_gas(call).await;
    let mut gas = json!({"block_gas_limit": block_gas_limit});
    let gas_limit = match (ask.gas_limit, estimate) {
        // The original SDK always sends 21000, even with calldata, which is certain to run out of
        // gas: when the node's estimate is higher, the estimate plus a fifth is used.
        (Some(asked), Ok(estimate)) if estimate > asked && !ask.data.is_empty() => {
            gas["requested"] = asked.into();
            gas["estimate"] = estimate.into();
            estimate.saturating_add(estimate / 5)
        }
        (Some(asked), Ok(estimate)) => {
            gas["requested"] = asked.into();
            gas["estimate"] = estimate.into();
            asked
        }
        (Some(asked), Err(e)) => {
            // The person sees why the node could not estimate it before deciding.
            gas["requested"] = asked.into();
            gas["estimate_error"] = describe(&e).into();
            asked
        }
        (None, Ok(estimate)) => {
            gas["estimate"] = estimate.into();
            // A plain transfer costs exactly its estimate; a call's gas can vary with state.
            if ask.data.is_empty() { estimate } else { estimate.saturating_add(estimate / 5) }
        }
        (None, Err(e)) => {
            return Err(Error::Policy(format!("Transaction would revert: {}", describe(&e))));
        }
    };
    if gas_limit > block_gas_limit {
        return Err(Error::BadRequest(format!(
            "Invalid `gasLimit`: {gas_limit} is above the latest block's gas limit of {block_gas_limit}"
        )));
    }
    gas["limit"] = gas_limit.into();

    let (model, max_fee_per_gas, priority) = match base_fee {
        Some(_) => {
            let est = provider.estimate_eip1559_fees().await.map_err(node)?;
            (FeeModel::Eip1559, U256::from(est.max_fee_per_gas), Some(U256::from(est.max_priority_fee_per_gas)))
        }
        None => (FeeModel::Legacy, U256::from(provider.get_gas_price().await.map_err(node)?), None),
    };
    let max_fee_wei = max_fee_per_gas
        .checked_mul(U256::from(gas_limit))
        .ok_or_else(|| Error::Policy("Transaction fee exceeds the configured cap (it overflows)".into()))?;
    let gwei = |v: U256| format_units(v, 9);
    if max_fee_per_gas > caps.max_fee_per_gas {
        return Err(Error::Policy(format!(
            "Transaction fee exceeds the configured cap (max fee per gas {} gwei, cap {} gwei on {}; \
             `max_fee_per_gas_gwei` under [chains.\"{}\"] in config.toml sets it)",
            gwei(max_fee_per_gas),
            gwei(caps.max_fee_per_gas),
            ask.chain,
            ask.chain
        )));
    }
    if max_fee_wei > caps.max_fee {
        return Err(Error::Policy(format!(
            "Transaction fee exceeds the configured cap (worst case {} for {gas_limit} gas, cap {} on {}; \
             `max_fee_eth` under [chains.\"{}\"] in config.toml sets it)",
            format_units(max_fee_wei, 18),
            format_units(caps.max_fee, 18),
            ask.chain,
            ask.chain
        )));
    }
    let fees = TxFees { model, max_fee_per_gas, max_priority_fee_per_gas: priority, max_fee_wei };
    let detail = json!({"gas": gas, "base_fee_per_gas": base_fee.map(|b| b.to_string())});
    Ok(Fixed { gas_limit, fees, detail })
}

/// The node's own words for an error, without the transport's wrapping.
pub fn describe(e: &alloy::transports::TransportError) -> String {
    let text = e.as_error_resp().map_or_else(|| e.to_string(), |resp| resp.message.to_string());
    text.chars().take(300).collect()
}
