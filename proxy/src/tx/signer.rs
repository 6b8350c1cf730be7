//! Signing and broadcasting an approved request with the user's wallet, through alloy: exactly the
//! gas limit, fee fields and chain id the person approved (fixed at request time, see
//! [`super::fees`]); alloy's fillers add only the nonce. If the node wants more than the approved
//! fee, the send fails with its words: it never pays more than the card said.
//!
//! Nonces: alloy's cached nonce manager keeps counting after a failed send, leaving a gap that
//! blocks every later transaction. Here each send asks the node for the pending count (simple
//! nonce management) while holding a per-(wallet, chain) lock, so concurrent approvals get
//! distinct nonces and a failure never leaves a gap. On a shared database the lock is held for
//! every proxy of the team ([`Store::lock_across_hosts`]): two hosts signing with one wallet take
//! turns, and each asks the node afresh, so one's failure never leaves the other a gap. (They must
//! sign through nodes that see each other's pending transactions, as one node does.)
//!
//! RPC goes over the proxy's own [`Upstream`] client (one TLS stack), wrapped as an alloy
//! transport.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use alloy::{
    network::{EthereumWallet, TransactionBuilder},
    providers::{Provider, ProviderBuilder},
    rpc::{
        client::RpcClient,
        json_rpc::{RequestPacket, ResponsePacket},
        types::TransactionRequest,
    },
    signers::local::PrivateKeySigner,
    transports::{TransportError, TransportErrorKind, TransportFut},
};
use alloy_primitives::{Address, B256};
use assegai_sdk::ChainId;
use bytes::Bytes;
use hyper::Uri;

use alloy_primitives::{Bytes as Calldata, U256};

use crate::{
    Error, Result,
    store::Store,
    tx::fees::{FeeModel, TxFees, describe},
    upstream::Upstream,
};

/// What is signed: the approved request, every field fixed.
#[derive(Debug, Clone)]
pub struct Signing {
    /// The chain (and so the chain id signed).
    pub chain: ChainId,
    /// Recipient or contract.
    pub to: Address,
    /// Native value.
    pub value: U256,
    /// Calldata.
    pub data: Calldata,
    /// Gas limit.
    pub gas_limit: u64,
    /// Fee fields.
    pub fees: TxFees,
}

/// A provider for reads (chain id, blocks, fees) over the proxy's upstream client.
pub fn read_provider(upstream: &Upstream, rpc: Uri) -> impl Provider + use<> {
    let is_local = rpc.host().is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "::1");
    let client = RpcClient::new(UpstreamTransport { upstream: upstream.clone(), uri: rpc }, is_local);
    ProviderBuilder::new().disable_recommended_fillers().connect_client(client)
}

/// JSON-RPC over the proxy's upstream client.
#[derive(Clone, Debug)]
struct UpstreamTransport {
    upstream: Upstream,
    uri: Uri,
}

impl tower::Service<RequestPacket> for UpstreamTransport {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RequestPacket) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let body = serde_json::to_vec(&req).map_err(TransportError::ser_err)?;
            let (_, reply) = this
                .upstream
                .post_json(this.uri.clone(), Bytes::from(body))
                .await
                .map_err(|e| TransportErrorKind::custom_str(&e.to_string()))?;
            serde_json::from_slice(&reply).map_err(|e| {
                TransportError::deser_err(e, String::from_utf8_lossy(&reply).chars().take(200).collect::<String>())
            })
        })
    }
}

/// Held while a nonce is taken and the transaction sent.
type NonceLock = Arc<tokio::sync::Mutex<()>>;

/// Sends approved requests; one lock per (wallet, chain).
#[derive(Debug, Default)]
pub struct Signer {
    locks: Mutex<HashMap<(Address, ChainId), NonceLock>>,
}

/// A broadcast transaction and the way to learn its fate.
pub struct Sent {
    /// Its hash.
    pub hash: B256,
    receipt: Box<dyn std::future::Future<Output = Result<Outcome>> + Send + Unpin>,
}

/// What the receipt says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Status 1 (false: it reverted).
    pub succeeded: bool,
    /// What it paid: gas used × effective gas price, wei.
    pub fee_wei: U256,
}

impl Sent {
    /// Waits for the receipt.
    pub async fn outcome(self) -> Result<Outcome> {
        self.receipt.await
    }
}

impl Signer {
    /// Signs `tx` with `signer` and broadcasts it through `rpc`, taking the nonce under the
    /// wallet's lock (for every proxy on `store`, when it is shared).
    pub async fn send(
        &self,
        upstream: &Upstream,
        store: &Arc<Store>,
        rpc: Uri,
        signer: PrivateKeySigner,
        tx: &Signing,
    ) -> Result<Sent> {
        let from = signer.address();
        let is_local = rpc.host().is_some_and(|h| h == "127.0.0.1" || h == "localhost" || h == "::1");
        let client = RpcClient::new(UpstreamTransport { upstream: upstream.clone(), uri: rpc }, is_local);
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_simple_nonce_management()
            .with_chain_id(tx.chain.id())
            .wallet(EthereumWallet::from(signer))
            .connect_client(client);
        let wide = |v: U256, what: &str| {
            u128::try_from(v).map_err(|_| Error::TxFailed(format!("the approved {what} does not fit a transaction")))
        };
        let mut request = TransactionRequest::default()
            .with_from(from)
            .with_to(tx.to)
            .with_value(tx.value)
            .with_input(tx.data.clone())
            .with_gas_limit(tx.gas_limit);
        request = match (tx.fees.model, tx.fees.max_priority_fee_per_gas) {
            (FeeModel::Eip1559, Some(priority)) => request
                .with_max_fee_per_gas(wide(tx.fees.max_fee_per_gas, "max fee per gas")?)
                .with_max_priority_fee_per_gas(wide(priority, "priority fee")?),
            _ => request.with_gas_price(wide(tx.fees.max_fee_per_gas, "gas price")?),
        };
        let lock = self.lock(from, tx.chain);
        let pending = {
            let _held = lock.lock().await;
            let team = {
                let (store, key) = (Arc::clone(store), format!("nonce/{from}/{}", tx.chain.id()));
                tokio::task::spawn_blocking(move || store.lock_across_hosts(&key))
                    .await
                    .map_err(|e| Error::Internal(format!("taking the wallet's lock stopped: {e}")))??
            };
            let sent = async {
                // Asked again, not cached: the node may have changed between request and approval,
                // and a transaction is only handed to the chain the person approved it for.
                let reported = provider.get_chain_id().await.map_err(|e| Error::TxFailed(describe(&e)))?;
                if reported != tx.chain.id() {
                    return Err(Error::ChainIdMismatch { reported, expected: tx.chain });
                }
                provider.send_transaction(request).await.map_err(|e| Error::TxFailed(describe(&e)))
            }
            .await;
            if let Some(team) = team {
                let _ = tokio::task::spawn_blocking(move || team.release()).await;
            }
            sent?
        };
        let hash = *pending.tx_hash();
        let receipt = Box::pin(async move {
            let receipt = pending
                .with_timeout(Some(Duration::from_secs(600)))
                .get_receipt()
                .await
                .map_err(|e| Error::TxFailed(format!("no receipt for {hash}: {e}")))?;
            let fee_wei = U256::from(receipt.gas_used).saturating_mul(U256::from(receipt.effective_gas_price));
            Ok(Outcome { succeeded: receipt.status(), fee_wei })
        });
        Ok(Sent { hash, receipt: Box::new(receipt) })
    }

    fn lock(&self, wallet: Address, chain: ChainId) -> NonceLock {
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).entry((wallet, chain)).or_default().clone()
    }
}
