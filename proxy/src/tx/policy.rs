//! Whether an agent may make a transaction: the shape, chain and calldata checks of SPEC §3.4, as
//! pure functions ([`parse`], then [`check`] over the [`Facts`] the request path gathered), so
//! unit tests need neither a node nor a database. What it may spend is [`super::limits`]' (value +
//! fee, once [`super::fees`] has fixed the fee); the store checks the rolling windows atomically
//! with the insert.

use alloy_primitives::{Address, Bytes, U256};
use assegai_sdk::{ChainId, wire::TxRequest};
use serde_json::{Value, json};

use crate::{
    Error, Result,
    manifest::Manifest,
    sanitize::quote,
    tx::decode::{self, TokenCall},
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

/// A request's fields, parsed, with its calldata decoded. No I/O.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The chain (one the manifest lists).
    pub chain: ChainId,
    /// Recipient or contract.
    pub to: Address,
    /// Native value.
    pub value: U256,
    /// Calldata.
    pub data: Bytes,
    /// The agent's gas limit, if it gave one.
    pub gas_limit: Option<u64>,
    /// The ERC-20 / ERC-721 call the calldata is, if it is one.
    pub call: Option<TokenCall>,
}

impl Parsed {
    /// The token contract whose allowance and decimals the check needs, if any.
    pub fn token(&self) -> Option<Address> {
        match self.call {
            Some(TokenCall::SetApprovalForAll { .. }) | None => None,
            Some(_) => Some(self.to),
        }
    }
}

/// What the check needs to know from outside the request, gathered before it runs (see
/// `tx::request`): for a token call, the allowance in force (the CLI's, else the manifest's) and
/// the token's symbol and decimals (known, or read from the chain — or why they could not be).
#[derive(Debug, Default)]
pub struct Facts {
    /// The allowance in force, as written.
    pub allowance: Option<String>,
    /// The token's symbol and decimals.
    pub token: Option<Result<(String, u8)>>,
}

/// Step 1, shape: the chain, every field, the calldata.
pub fn parse(manifest: &Manifest, req: &TxRequest) -> Result<Parsed> {
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
    let call = decode::decode(&data).map_err(|e| Error::BadRequest(format!("Invalid `data`: {e}")))?;
    Ok(Parsed { chain: req.chain, to, value, data, gas_limit, call })
}

/// Steps 2–3, calldata: what a token call may do, and that other calldata goes only to
/// whitelisted contracts. Pure: everything it needs is in `parsed` and `facts`.
pub fn check(manifest: &Manifest, parsed: Parsed, facts: Facts) -> Result<Checked> {
    let Parsed { chain, to, value, data, gas_limit, call } = parsed;
    let mut detail = json!({"chain": chain, "to": to.to_checksum(None), "value_wei": value.to_string()});
    let symbol = native_symbol(chain);
    let action = match call {
        Some(call) => {
            if !value.is_zero() {
                return Err(Error::Policy("ERC20 transfers must have a transaction value of 0".into()));
            }
            token_action(manifest, chain, to, &call, facts, &mut detail)?
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
    Ok(Checked { chain, to, value, data, gas_limit, action, detail })
}

fn token_action(
    manifest: &Manifest,
    chain: ChainId,
    token: Address,
    call: &TokenCall,
    facts: Facts,
    detail: &mut Value,
) -> Result<String> {
    let spenders = &manifest.permissions.spenders;
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
    let allowance =
        facts.allowance.ok_or_else(|| Error::Policy(format!("No allowance found for {token} on chain {chain}")))?;
    let (symbol, decimals) =
        facts.token.unwrap_or_else(|| Err(Error::Internal(format!("the decimals of {token} were not looked up"))))?;
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

    fn manifest() -> Manifest {
        let m = json!({
            "name": "t",
            "permissions": {"chains": ["eip155:1"], "contracts": ["0x5FbDB2315678afecb367f032d93F642f64180aa3"],
                            "spenders": ["0x3fC91A3afd70395Cd496C647d5a6CC9D4B2b7FAD"]},
        });
        Manifest::parse(&m.to_string(), std::path::Path::new("t")).unwrap()
    }

    const USDC: &str = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48";

    fn request(to: &str, value: &str, data: &str) -> TxRequest {
        TxRequest {
            chain: ChainId::eip155(1),
            to: to.into(),
            value: value.into(),
            data: Some(data.into()),
            gas_limit: None,
        }
    }

    /// `transfer(0xd8dA…, amount)` or `approve(spender, amount)` calldata.
    fn token_data(selector: &str, who: &str, amount: U256) -> String {
        format!(
            "0x{selector}{:0>64}{}",
            who.trim_start_matches("0x").to_lowercase(),
            hex::encode(amount.to_be_bytes::<32>())
        )
    }

    fn facts(allowance: Option<&str>) -> Facts {
        Facts { allowance: allowance.map(str::to_owned), token: Some(Ok(("USDC".into(), 6))) }
    }

    fn run(req: &TxRequest, f: Facts) -> Result<Checked> {
        let m = manifest();
        check(&m, parse(&m, req)?, f)
    }

    #[test]
    fn token_calls_are_held_to_the_facts_without_a_node_or_a_database() {
        let to = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045";
        let transfer = request(USDC, "0", &token_data("a9059cbb", to, U256::from(12_500_000)));
        let ok = run(&transfer, facts(Some("1000"))).unwrap();
        assert_eq!(ok.action, format!("Transfer 12.5 USDC to {to}"));
        assert_eq!(ok.detail["token"]["allowance"], "1000");
        let over = run(&transfer, facts(Some("12"))).unwrap_err();
        assert!(over.to_string().contains("exceeds the configured allowance"), "{over}");
        let none = run(&transfer, facts(None)).unwrap_err();
        assert!(none.to_string().contains("No allowance found"), "{none}");
        let with_value = request(USDC, "1", &token_data("a9059cbb", to, U256::from(1)));
        assert!(run(&with_value, facts(Some("1000"))).unwrap_err().to_string().contains("value of 0"));
        // An unlimited approval: refused for a stranger before the allowance matters, fine for a
        // listed spender, and the spender is kept for `agents show`.
        let stranger = token_data("095ea7b3", "0x1111111254EEB25477B68fb85Ed929f73A960582", U256::MAX);
        let e = run(&request(USDC, "0", &stranger), facts(None)).unwrap_err();
        assert!(e.to_string().contains("unlimited approval"), "{e}");
        let listed = token_data("095ea7b3", "0x3fC91A3afd70395Cd496C647d5a6CC9D4B2b7FAD", U256::MAX);
        let ok = run(&request(USDC, "0", &listed), facts(Some("1"))).unwrap();
        assert_eq!(ok.detail["spender"], "0x3fC91A3afd70395Cd496C647d5a6CC9D4B2b7FAD");
        // The chain's decimals could not be read: that is the answer.
        let unreadable = Facts { allowance: Some("1".into()), token: Some(Err(Error::Policy("no decimals".into()))) };
        assert!(run(&transfer, unreadable).unwrap_err().to_string().contains("no decimals"));
    }

    #[test]
    fn calldata_goes_only_to_whitelisted_contracts_and_chains_come_first() {
        let listed = request("0x5FbDB2315678afecb367f032d93F642f64180aa3", "0", "0x12345678");
        assert_eq!(
            run(&listed, Facts::default()).unwrap().action,
            "Call 0x12345678 on 0x5FbDB2315678afecb367f032d93F642f64180aa3"
        );
        let other = request("0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512", "0", "0x12345678");
        assert!(run(&other, Facts::default()).unwrap_err().to_string().contains("not whitelisted"));
        let mut foreign = listed.clone();
        foreign.chain = ChainId::eip155(137);
        foreign.value = "nonsense".into();
        assert!(matches!(run(&foreign, Facts::default()), Err(Error::ChainNotAllowed(_))));
        let plain = request("0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045", "1000000000000000000", "0x");
        assert_eq!(
            run(&plain, Facts::default()).unwrap().action,
            "Send 1 ETH to 0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045"
        );
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
