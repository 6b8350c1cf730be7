//! Whether an agent may make a transaction: the shape, chain and calldata checks of SPEC §3.4.
//! What it may spend is [`super::limits`]' (value + fee, once [`super::fees`] has fixed the fee);
//! the store checks the rolling windows atomically with the insert.

use alloy_primitives::{Address, Bytes, U256};
use assegai_sdk::{ChainId, wire::TxRequest};
use serde_json::{Value, json};

use crate::{
    Error, Result,
    auth::Agent,
    sanitize::quote,
    server::AppState,
    tx::{
        decode::{self, TokenCall},
        tokens,
    },
    units::{format_units, parse_base_units, parse_units},
};

/// A request that passed the shape, chain and calldata checks (fees and limits come next).
#[derive(Debug, Clone)]
pub struct Checked {
    /// The chain.
    pub chain: ChainId,
    /// Recipient or contract.
    pub to: Address,
    /// Native value.
    pub value: U256,
    /// Calldata.
    pub data: Bytes,
    /// Gas limit, if the agent gave one.
    pub gas_limit: Option<u64>,
    /// What it does, for people.
    pub action: String,
    /// Structured detail for the approver (token, amounts…).
    pub detail: Value,
}

/// Runs the checks. Token decimals for unknown tokens are read from the chain.
pub async fn check(state: &AppState, agent: &Agent, req: &TxRequest) -> Result<Checked> {
    let manifest = &agent.manifest;
    // 1. Shape.
    if !manifest.allows_chain(req.chain) {
        return Err(Error::ChainNotAllowed(req.chain));
    }
    let to = parse_address(&req.to).map_err(|e| Error::BadRequest(format!("Invalid `to`: {e}")))?;
    let value = parse_base_units(&req.value).map_err(|e| {
        Error::BadRequest(format!(
            "Invalid `value`: {e}; give the amount in wei as a decimal string, e.g. \"1000000000000000\""
        ))
    })?;
    let data = parse_hex(req.data.as_deref().unwrap_or("0x"))
        .map_err(|e| Error::BadRequest(format!("Invalid `data`: {e}")))?;
    let gas_limit = req
        .gas_limit
        .as_deref()
        .map(|g| match g.parse::<u64>() {
            Ok(n) if n >= 21_000 && g.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => Err(Error::BadRequest(format!(
                "Invalid `gasLimit`: `{}` is not a decimal gas amount of at least 21000",
                quote(g, 80)
            ))),
        })
        .transpose()?;

    let mut detail = json!({"chain": req.chain, "to": to.to_checksum(None), "value_wei": value.to_string()});
    let symbol = native_symbol(req.chain);
    // 2–3. Calldata.
    let call = decode::decode(&data).map_err(|e| Error::BadRequest(format!("Invalid `data`: {e}")))?;
    let action = match call {
        Some(call) => {
            if !value.is_zero() {
                return Err(Error::Policy("ERC20 transfers must have a transaction value of 0".into()));
            }
            token_action(state, agent, req.chain, to, &call, &mut detail).await?
        }
        None if !data.is_empty() => {
            if !manifest.permissions.contracts.contains(&to) {
                return Err(Error::Policy(format!(
                    "Contract {to} is not whitelisted for this agent (add it to `permissions.contracts` in assegai.json)"
                )));
            }
            let selector = hex::encode(&data[..data.len().min(4)]);
            if value.is_zero() {
                format!("Call 0x{selector} on {to}")
            } else {
                format!("Call 0x{selector} on {to} sending {} {symbol}", format_units(value, 18))
            }
        }
        None => format!("Send {} {symbol} to {to}", format_units(value, 18)),
    };

    Ok(Checked { chain: req.chain, to, value, data, gas_limit, action, detail })
}

async fn token_action(
    state: &AppState,
    agent: &Agent,
    chain: ChainId,
    token: Address,
    call: &TokenCall,
    detail: &mut Value,
) -> Result<String> {
    let spenders = &agent.manifest.permissions.spenders;
    let (amount, spender) = match *call {
        TokenCall::Transfer { amount, .. } | TokenCall::TransferFrom { amount, .. } => (amount, None),
        TokenCall::Approve { spender, amount } | TokenCall::IncreaseAllowance { spender, amount } => {
            (amount, Some(spender))
        }
        TokenCall::SetApprovalForAll { operator, approved } => {
            if approved && !spenders.contains(&operator) {
                return Err(Error::Policy(format!(
                    "setApprovalForAll would let {operator} move every token of this contract; refused unless the operator is in `permissions.spenders`"
                )));
            }
            detail["operator"] = json!(operator.to_checksum(None));
            let verb = if approved { "Let" } else { "Stop letting" };
            return Ok(format!("{verb} {operator} move all tokens of {token}"));
        }
    };
    // Only an approval can be unlimited; a transfer of 2^256-1 is simply over any allowance.
    let unlimited_approval = amount == U256::MAX && spender.is_some();
    if let Some(spender) = spender.filter(|_| unlimited_approval)
        && !spenders.contains(&spender)
    {
        return Err(Error::Policy(format!(
            "An unlimited approval for {spender} is refused unless the spender is in `permissions.spenders`"
        )));
    }
    let allowance = allowance_for(state, agent, chain, token)
        .await?
        .ok_or_else(|| Error::Policy(format!("No allowance found for {token} on chain {chain}")))?;
    let (symbol, decimals) = match tokens::known(chain, token) {
        Some(t) => (t.symbol.to_owned(), t.decimals),
        None => (format!("tokens of {token}"), read_decimals(state, agent, chain, token).await?),
    };
    let limit = parse_units(allowance.as_str(), decimals).map_err(|e| {
        Error::Policy(format!(
            "The allowance \"{}\" does not fit this token's {decimals} decimals: {e}",
            allowance.as_str()
        ))
    })?;
    if !unlimited_approval && amount > limit {
        return Err(Error::Policy("Requested amount exceeds the configured allowance for this token".into()));
    }
    let shown = if unlimited_approval { "unlimited".to_owned() } else { format_units(amount, decimals) };
    detail["token"] = json!({"address": token.to_checksum(None), "symbol": symbol, "decimals": decimals, "amount": amount.to_string(), "allowance": allowance.as_str()});
    if let Some(spender) = spender {
        // What the approval grants outlives the agent: `agents show` reads it back, and
        // `agents revoke-approvals` undoes it.
        detail["spender"] = json!(spender.to_checksum(None));
    }
    Ok(match *call {
        TokenCall::Transfer { to, .. } => format!("Transfer {shown} {symbol} to {to}"),
        TokenCall::TransferFrom { from, to, .. } => format!("Transfer {shown} {symbol} from {from} to {to}"),
        TokenCall::Approve { spender, .. } => format!("Approve {spender} to spend {shown} {symbol}"),
        TokenCall::IncreaseAllowance { spender, .. } => format!("Let {spender} spend {shown} more {symbol}"),
        TokenCall::SetApprovalForAll { .. } => unreachable!("handled above"),
    })
}

/// The agent's allowance for `token`: one set with `assegai allowance set` wins over the
/// manifest's, so a person can change it without editing files.
async fn allowance_for(state: &AppState, agent: &Agent, chain: ChainId, token: Address) -> Result<Option<String>> {
    let store = state.store().clone();
    let (id, key) = (agent.id.clone(), token.to_checksum(None));
    let set = tokio::task::spawn_blocking(move || store.allowance(&id, chain.id(), &key))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    Ok(set.map(|row| row.amount).or_else(|| {
        agent.manifest.allowances.get(&chain).and_then(|tokens| tokens.get(&token)).map(|a| a.as_str().to_owned())
    }))
}

/// `decimals()` of a token the proxy does not know, from the agent's RPC for that chain.
async fn read_decimals(state: &AppState, agent: &Agent, chain: ChainId, token: Address) -> Result<u8> {
    let url = state.chain().rpc_url(&agent.manifest, chain)?;
    let params = json!([{"to": token, "data": "0x313ce567"}, "latest"]);
    let raw = state.chain().query(url, "eth_call", &params).await?;
    let hex: String =
        serde_json::from_str(raw.get()).map_err(|_| Error::BadUpstream("decimals() returned no hex".into()))?;
    let n = U256::from_str_radix(hex.trim_start_matches("0x"), 16).ok().filter(|n| *n <= U256::from(77));
    n.map(|n| n.to::<u8>()).ok_or_else(|| {
        Error::Policy(format!("Cannot read the decimals of {token} on {chain}: is it an ERC-20 token contract?"))
    })
}

/// Parses an address; mixed case must be a valid EIP-55 checksum (a typo, otherwise).
pub fn parse_address(text: &str) -> std::result::Result<Address, String> {
    let shown = quote(text, 80);
    let hex =
        text.strip_prefix("0x").ok_or_else(|| format!("`{shown}` is not an address (0x followed by 40 hex digits)"))?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("`{shown}` is not an address (0x followed by 40 hex digits)"));
    }
    let mixed = hex.bytes().any(|b| b.is_ascii_lowercase()) && hex.bytes().any(|b| b.is_ascii_uppercase());
    if mixed {
        Address::parse_checksummed(text, None)
            .map_err(|_| format!("`{shown}` has a wrong EIP-55 checksum; check for a typo or write it in lower case"))
    } else {
        text.parse().map_err(|_| format!("`{shown}` is not an address"))
    }
}

/// Parses `0x`-prefixed hex calldata.
pub fn parse_hex(text: &str) -> std::result::Result<Bytes, String> {
    let shown = quote(text, 80);
    let hex = text.strip_prefix("0x").ok_or_else(|| format!("`{shown}` must start with 0x"))?;
    if hex.len() % 2 != 0 {
        return Err(format!("`{shown}` has an odd number of hex digits"));
    }
    hex::decode(hex).map(Bytes::from).map_err(|_| format!("`{shown}` is not hex"))
}

/// The native currency's ticker.
pub fn native_symbol(chain: ChainId) -> &'static str {
    match chain.id() {
        56 => "BNB",
        137 => "POL",
        43114 => "AVAX",
        _ => "ETH",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert!(parse_address("0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045").is_ok());
        assert!(parse_address("0xd8da6bf26964af9d7eed9e03e53415d37aa96045").is_ok());
        let e = parse_address("0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96046").unwrap_err();
        assert!(e.contains("checksum"), "{e}");
        for bad in ["", "0x", "0x12", "d8da6bf26964af9d7eed9e03e53415d37aa96045", "0xzz", "0x\u{1b}[2J"] {
            assert!(parse_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hex_data() {
        assert_eq!(parse_hex("0x").unwrap().len(), 0);
        assert_eq!(parse_hex("0xa9059cbb").unwrap().len(), 4);
        assert!(parse_hex("a9").is_err());
        assert!(parse_hex("0xabc").is_err());
        assert!(parse_hex("0xzz").is_err());
    }
}
