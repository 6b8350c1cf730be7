// {{name}}: an Assegai agent.
//
// It holds no key and no secret, only an id and a token for the local Assegai proxy
// (ASSEGAI_AGENT_ID, ASSEGAI_AGENT_TOKEN, ASSEGAI_API_PROXY, set by `assegai run`). The proxy reads
// the chain for it, checks every transaction against assegai.json, and asks a person before the
// user's wallet signs anything.
//
// What it does: logs the names of the environment variables it sees, reads its wallet address and
// balance on the first chain its manifest allows, asks for a 0.0001 ETH transfer there, then logs a
// heartbeat until it gets SIGTERM or Ctrl-C. What it logs goes to the proxy, and `assegai run`
// shows it with the agent's output (`assegai logs` later).

import { readFileSync } from 'node:fs';

import {
  AssegaiSDK,
  ForbiddenError,
  InsufficientAllowanceError,
  TransactionRejectedError,
  TransactionTimeoutError,
} from './sdk.js';

/** Its manifest, beside this file. */
const MANIFEST = new URL('./assegai.json', import.meta.url);
/** Who receives the example transfer. */
const RECIPIENT = '0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045';
/** 0.0001 ETH, in wei. */
const AMOUNT_WEI = 100_000_000_000_000n;
/**
 * Seconds between heartbeats unless HEARTBEAT_SECS says otherwise. `assegai run` hands the agent
 * only ASSEGAI_* variables, PATH, HOME, LANG and TERM, so under it this default applies.
 */
const DEFAULT_HEARTBEAT_SECS = 30;

let sdk;
let heartbeat;

// Installed before any work starts, so an early SIGTERM is a clean stop rather than a kill.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.once(signal, () => shutdown(signal));
}

async function shutdown(signal) {
  clearInterval(heartbeat);
  if (sdk) {
    // The proxy may be gone already; do not hang on the goodbye.
    const bye = sdk.info(`received ${signal}, shutting down`);
    await Promise.race([bye, new Promise((resolve) => setTimeout(resolve, 2000))]);
  }
  process.exit(0);
}

/** `wei` (a BigInt) as an exact decimal amount of ETH ("0.0001", "10000"). */
function formatEth(wei) {
  const unit = 10n ** 18n;
  const whole = wei / unit;
  const frac = wei % unit;
  if (frac === 0n) return whole.toString();
  return `${whole}.${frac.toString().padStart(18, '0').replace(/0+$/, '')}`;
}

/**
 * Asks for the example transfer and waits for a person to decide. A "no" or no answer is part of
 * normal life for an agent: it logs it and carries on.
 */
async function requestTransfer(chain) {
  await sdk.info(`requesting a transfer of ${formatEth(AMOUNT_WEI)} ETH to ${RECIPIENT}; it waits for your decision`);
  try {
    const txHash = await sdk.requestTransaction({ chain, to: RECIPIENT, value: AMOUNT_WEI.toString() });
    await sdk.success(`transfer sent: ${txHash}`);
  } catch (error) {
    if (error instanceof TransactionRejectedError) {
      await sdk.warn(`transfer rejected (${error.message}); carrying on`);
    } else if (error instanceof TransactionTimeoutError) {
      await sdk.warn(`nobody approved the transfer in time (${error.message}); carrying on`);
    } else if (error instanceof ForbiddenError || error instanceof InsufficientAllowanceError) {
      await sdk.error(`the policy refused the transfer: ${error.message}`);
    } else {
      throw error;
    }
  }
}

/** The chain this agent works on: the first one its manifest allows (`permissions.chains`). */
function manifestChain() {
  const chains = JSON.parse(readFileSync(MANIFEST, 'utf8')).permissions?.chains ?? [];
  if (chains.length === 0) throw new Error('assegai.json allows no chain (`permissions.chains` is empty)');
  return String(chains[0]);
}

async function main() {
  sdk = new AssegaiSDK();
  // Names only, never values: a value could be a secret.
  await sdk.info(`environment: ${Object.keys(process.env).sort().join(', ')}`);

  const chain = manifestChain();
  const address = await sdk.getWalletAddress(chain);
  await sdk.info(`wallet on ${chain}: ${address}`);
  const wei = BigInt(await sdk.getBalance(chain, address));
  await sdk.info(`balance: ${formatEth(wei)} ETH (${wei} wei)`);

  await requestTransfer(chain);

  const secs = Number.parseInt(process.env.HEARTBEAT_SECS ?? '', 10);
  const every = secs > 0 ? secs : DEFAULT_HEARTBEAT_SECS;
  const started = Date.now();
  heartbeat = setInterval(() => {
    sdk.info(`heartbeat: up ${Math.round((Date.now() - started) / 1000)}s`);
  }, every * 1000);
}

main().catch(async (error) => {
  const message = `${error.name ?? 'Error'}: ${error.message}`;
  if (sdk) await sdk.error(`stopping: ${message}`);
  else console.error(`error: ${message} (start this agent with \`assegai run .\`)`);
  process.exit(1);
});
