// A small client for the local Assegai proxy, with no dependencies.
//
// It offers the methods of the original TypeScript SDK (`@assegailabs/sdk`) under the same names
// and the same error classes, so an agent written for it runs here unchanged:
//
//   import { AssegaiSDK } from './sdk.js';
//   const sdk = new AssegaiSDK();
//   const address = await sdk.getWalletAddress('eip155:31337');
//
// The agent holds only an id and a token (ASSEGAI_AGENT_ID, ASSEGAI_AGENT_TOKEN); keys, the
// wallet and the spending policy stay in the proxy (ASSEGAI_API_PROXY).

import http from 'node:http';
import https from 'node:https';

const DEFAULT_API_PROXY = 'http://host.docker.internal:8765';
/** Milliseconds a chain read, a log line or the wallet lookup may take. */
const DEFAULT_TIMEOUT_MS = 30_000;
/** Milliseconds an AI call may take: long answers are slow. */
const DEFAULT_AI_TIMEOUT_MS = 600_000;
/** How many times reads are retried on a network error, 429, 502, 503 or 504. */
const DEFAULT_MAX_RETRIES = 2;

/** Machine codes of the SDK's errors (`error.code`). */
export const ErrorCode = Object.freeze({
  UNAUTHORIZED: 'UNAUTHORIZED',
  FORBIDDEN: 'FORBIDDEN',
  NOT_FOUND: 'NOT_FOUND',
  RATE_LIMITED: 'RATE_LIMITED',
  TIMEOUT: 'TIMEOUT',
  NETWORK_ERROR: 'NETWORK_ERROR',
  VALIDATION_ERROR: 'VALIDATION_ERROR',
  TRANSACTION_REJECTED: 'TRANSACTION_REJECTED',
  TRANSACTION_TIMEOUT: 'TRANSACTION_TIMEOUT',
  INSUFFICIENT_ALLOWANCE: 'INSUFFICIENT_ALLOWANCE',
  RPC_ERROR: 'RPC_ERROR',
  API_ERROR: 'API_ERROR',
  UNKNOWN: 'UNKNOWN',
});

/**
 * Every error this module throws. `message` is the proxy's own words; `details.status` is the
 * HTTP status and `details.code` the proxy's machine code, when there was a reply.
 */
export class AssegaiError extends Error {
  constructor(code, message, details) {
    super(message);
    this.name = 'AssegaiError';
    this.code = code;
    if (details !== undefined) this.details = details;
  }

  toJSON() {
    const out = { code: this.code, message: this.message };
    if (this.details !== undefined) out.details = this.details;
    return out;
  }
}

/** 401: the agent id or token is missing or wrong. */
export class AuthenticationError extends AssegaiError {
  constructor(message = 'Authentication failed', details) {
    super(ErrorCode.UNAUTHORIZED, message, details);
    this.name = 'AuthenticationError';
  }
}

/** 403: the agent's policy forbids this (chain, contract, spending limit, paused agent...). */
export class ForbiddenError extends AssegaiError {
  constructor(message = 'Access forbidden', details) {
    super(ErrorCode.FORBIDDEN, message, details);
    this.name = 'ForbiddenError';
  }
}

/** 429: too many requests; `retryAfter` is in seconds when the proxy said. */
export class RateLimitError extends AssegaiError {
  constructor(message = 'Rate limit exceeded', retryAfter, details) {
    super(ErrorCode.RATE_LIMITED, message, details);
    this.name = 'RateLimitError';
    if (retryAfter !== undefined) this.retryAfter = retryAfter;
  }
}

/** The proxy did not answer in time. */
export class TimeoutError extends AssegaiError {
  constructor(message = 'Request timed out', details) {
    super(ErrorCode.TIMEOUT, message, details);
    this.name = 'TimeoutError';
  }
}

/** The proxy could not be reached, or the connection broke. */
export class NetworkError extends AssegaiError {
  constructor(message = 'Network error', details) {
    super(ErrorCode.NETWORK_ERROR, message, details);
    this.name = 'NetworkError';
  }
}

/** A request this module refused to send because it is malformed. */
export class ValidationError extends AssegaiError {
  constructor(message, details) {
    super(ErrorCode.VALIDATION_ERROR, message, details);
    this.name = 'ValidationError';
  }
}

/** The user rejected the transaction. */
export class TransactionRejectedError extends AssegaiError {
  constructor(message = 'Transaction rejected by user', details) {
    super(ErrorCode.TRANSACTION_REJECTED, message, details);
    this.name = 'TransactionRejectedError';
  }
}

/** Nobody approved the transaction in time. */
export class TransactionTimeoutError extends AssegaiError {
  constructor(message = 'Transaction approval timeout', details) {
    super(ErrorCode.TRANSACTION_TIMEOUT, message, details);
    this.name = 'TransactionTimeoutError';
  }
}

/** A token transfer without an allowance, or above it. */
export class InsufficientAllowanceError extends AssegaiError {
  constructor(message = 'Insufficient spending allowance', details) {
    super(ErrorCode.INSUFFICIENT_ALLOWANCE, message, details);
    this.name = 'InsufficientAllowanceError';
  }
}

/** The node answered a chain query with an error (`RPC Error: ...`). */
export class RpcError extends AssegaiError {
  constructor(message, rpcCode, details) {
    super(ErrorCode.RPC_ERROR, message, details);
    this.name = 'RpcError';
    if (rpcCode !== undefined) this.rpcCode = rpcCode;
  }
}

/** Any other failure reply: a server error, or an AI provider's own error. */
export class ApiError extends AssegaiError {
  constructor(message, statusCode, details) {
    super(ErrorCode.API_ERROR, message, details);
    this.name = 'ApiError';
    if (statusCode !== undefined) this.statusCode = statusCode;
  }
}

/**
 * The text of a failure reply: the proxy's `error` string, or the `error.message` of a vendor's
 * reply passed through unchanged (OpenAI and Anthropic nest it in an object).
 */
function messageOf(body) {
  if (!body || typeof body !== 'object') return undefined;
  for (const candidate of [body.error, body.error?.message, body.message]) {
    if (typeof candidate === 'string' && candidate !== '') return candidate;
  }
  return undefined;
}

/**
 * The error for a failure reply: first by the proxy's message (these strings are part of its
 * protocol), then by status, as the original SDK does.
 */
export function errorFromResponse(status, body, retryAfter) {
  const message = messageOf(body) || `Request failed with status ${status}`;
  const details = { status };
  if (body && typeof body.code === 'string') details.code = body.code;
  if (message.includes('allowance')) return new InsufficientAllowanceError(message, details);
  if (message.includes('rejected by user')) return new TransactionRejectedError(message, details);
  if (message.includes('approval timeout')) return new TransactionTimeoutError(message, details);
  if (message.includes('Rate limit')) return new RateLimitError(message, retryAfter, details);
  if (message.includes('RPC Error')) return new RpcError(message, undefined, details);
  switch (status) {
    case 401:
      return new AuthenticationError(message, details);
    case 403:
      return new ForbiddenError(message, details);
    case 404:
      return new AssegaiError(ErrorCode.NOT_FOUND, message, details);
    case 408:
      return new TimeoutError(message, details);
    case 429:
      return new RateLimitError(message, retryAfter, details);
    default:
      return new ApiError(message, status, details);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A client for the Assegai proxy. */
export class AssegaiSDK {
  /**
   * @param {object} [config] Everything is optional; the environment fills the gaps.
   * @param {string} [config.apiProxyUrl] Default `ASSEGAI_API_PROXY`, else `http://host.docker.internal:8765`.
   * @param {string} [config.agentId] Default `ASSEGAI_AGENT_ID`.
   * @param {string} [config.agentToken] Default `ASSEGAI_AGENT_TOKEN`.
   * @param {number} [config.timeout] Milliseconds for reads and logs (default 30000). Transaction
   *   requests wait as long as the proxy holds them (until a person decides, or its approval timeout).
   * @param {number} [config.aiTimeout] Milliseconds for `callClaude` / `callOpenAI` (default 600000).
   * @param {number} [config.maxRetries] Retries of reads on network errors, 429, 502-504 (default 2).
   * @param {boolean} [config.debug] Print each request on stdout (default false).
   * @throws {AuthenticationError} When the agent id or token is missing.
   */
  constructor(config = {}) {
    const env = (name) => (process.env[name] ? process.env[name] : undefined);
    this.apiProxyUrl = (config.apiProxyUrl ?? env('ASSEGAI_API_PROXY') ?? DEFAULT_API_PROXY).replace(/\/+$/, '');
    this.agentId = config.agentId ?? env('ASSEGAI_AGENT_ID') ?? '';
    this.agentToken = config.agentToken ?? env('ASSEGAI_AGENT_TOKEN') ?? '';
    this.timeout = config.timeout ?? DEFAULT_TIMEOUT_MS;
    this.aiTimeout = config.aiTimeout ?? DEFAULT_AI_TIMEOUT_MS;
    this.maxRetries = config.maxRetries ?? DEFAULT_MAX_RETRIES;
    this.debugEnabled = config.debug ?? false;
    if (!this.agentId || !this.agentToken) {
      throw new AuthenticationError(
        'Agent ID and token are required: set ASSEGAI_AGENT_ID and ASSEGAI_AGENT_TOKEN ' +
          '(`assegai run` does), or pass agentId and agentToken.',
      );
    }
    if (!/^https?:\/\//.test(this.apiProxyUrl)) {
      throw new ValidationError(`proxy URL \`${this.apiProxyUrl}\` is not an http(s) URL`);
    }
  }

  // ---- Wallet and chain --------------------------------------------------------------------

  /** The address the proxy signs with on `chain` (CAIP-2, e.g. `eip155:31337`). */
  async getWalletAddress(chain) {
    const reply = await this.#read('GET', `/agent/wallet-address/${chain}`);
    return reply.address;
  }

  /** Calls a read-only JSON-RPC method on a chain the manifest allows; returns its `result`. */
  async queryChain(chain, method, params = []) {
    const reply = await this.#read('POST', '/agent/query-chain', { chain, method, params });
    return reply.result;
  }

  /** The native balance of `address`, in wei, as a hex string (`BigInt(hex)` makes it a number). */
  async getBalance(chain, address) {
    return this.queryChain(chain, 'eth_getBalance', [address, 'latest']);
  }

  /** The nonce of `address`, as a hex string. */
  async getTransactionCount(chain, address) {
    return this.queryChain(chain, 'eth_getTransactionCount', [address, 'latest']);
  }

  /** The gas price in wei, as a hex string. */
  async getGasPrice(chain) {
    return this.queryChain(chain, 'eth_gasPrice', []);
  }

  /** The latest block number, as a hex string. */
  async getBlockNumber(chain) {
    return this.queryChain(chain, 'eth_blockNumber', []);
  }

  /** Whether `address` holds code. */
  async isContract(chain, address) {
    const code = await this.queryChain(chain, 'eth_getCode', [address, 'latest']);
    return typeof code === 'string' && code !== '0x' && code !== '0x0';
  }

  // ---- Transactions ------------------------------------------------------------------------

  /**
   * Asks for a transaction and waits until a person approves or rejects it; returns the hash once
   * the user's wallet has signed and broadcast it. Never retried: a retry could pay twice.
   *
   * @param {object} request
   * @param {string} request.chain CAIP-2 chain id, e.g. `eip155:31337`.
   * @param {string} request.to Recipient or contract address.
   * @param {string} request.value Wei, as a decimal string.
   * @param {string} [request.data] Calldata, `0x`-prefixed hex.
   * @param {string} [request.gasLimit] Decimal; without it the proxy uses 21000 for a plain
   *   transfer and estimates a call.
   * @returns {Promise<string>} The transaction hash.
   * @throws {TransactionRejectedError} The user said no.
   * @throws {TransactionTimeoutError} Nobody answered in time.
   * @throws {InsufficientAllowanceError} A token transfer without (enough) allowance.
   * @throws {ForbiddenError} Any other policy refusal (chain, contract, spending limit).
   */
  async requestTransaction(request) {
    if (!request || !request.chain) throw new ValidationError('chain is required');
    if (!request.to || !/^0x[0-9a-fA-F]{40}$/.test(request.to)) throw new ValidationError('Invalid "to" address');
    if (request.value === undefined || request.value === null || request.value === '') {
      throw new ValidationError('value is required');
    }
    const body = { chain: request.chain, to: request.to, value: String(request.value) };
    if (request.data) body.data = request.data;
    if (request.gasLimit) body.gasLimit = String(request.gasLimit);
    // No client-side time limit, and a fresh connection: a pooled one the proxy has just closed
    // would fail a request that must not be retried.
    const reply = await this.#send('POST', '/agent/request-transaction', body, { timeout: 0, fresh: true });
    return reply.txHash;
  }

  /** Where one of this agent's transaction requests stands (`status`, `txHash`...). */
  async getTransaction(id) {
    return this.#read('GET', `/agent/transactions/${encodeURIComponent(id)}`);
  }

  // ---- AI ------------------------------------------------------------------------------------

  /**
   * Anthropic's Messages API through the proxy, which adds the user's key. The manifest must list
   * `anthropic` in `permissions.apis`. Not retried: a model call costs money.
   */
  async callClaude(options) {
    const body = { ...options, max_tokens: options.max_tokens ?? 4096 };
    return this.#send('POST', '/api/anthropic/v1/messages', body, { timeout: this.aiTimeout });
  }

  /** OpenAI's Chat Completions API through the proxy (`openai` in `permissions.apis`). */
  async callOpenAI(options) {
    return this.#send('POST', '/api/openai/v1/chat/completions', { ...options }, { timeout: this.aiTimeout });
  }

  // ---- Logging -----------------------------------------------------------------------------

  /**
   * Sends a line to the proxy, which stores it for `assegai logs` (and `assegai run` shows it with
   * the agent's output, so it is not printed here too). Never throws: a line the proxy does not
   * take is printed on stderr instead, as `[level] message (not sent to the Assegai proxy: why)`.
   *
   * @param {'debug'|'info'|'warn'|'error'|'success'} level
   * @param {string} message
   * @param {object} [data] Structured detail, stored with the line.
   */
  async log(level, message, data) {
    try {
      await this.#send('POST', '/agent/log', { level, message: String(message), data });
    } catch (e) {
      console.error(`[${level}] ${message} (not sent to the Assegai proxy: ${e.message})`);
    }
  }

  debug(message, data) {
    return this.log('debug', message, data);
  }

  info(message, data) {
    return this.log('info', message, data);
  }

  warn(message, data) {
    return this.log('warn', message, data);
  }

  error(message, data) {
    return this.log('error', message, data);
  }

  success(message, data) {
    return this.log('success', message, data);
  }

  // ---- Utilities ---------------------------------------------------------------------------

  getAgentId() {
    return this.agentId;
  }

  isConfigured() {
    return Boolean(this.agentId && this.agentToken);
  }

  /** Whether the proxy answers `GET /health`. Never throws. */
  async healthCheck() {
    try {
      const reply = await this.#send('GET', '/health', undefined, { auth: false });
      return reply.status === 'ok';
    } catch {
      return false;
    }
  }

  // ---- HTTP --------------------------------------------------------------------------------

  /** An idempotent call: retried with backoff on network errors, 429 and 502-504. */
  async #read(method, path, body) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#send(method, path, body);
      } catch (e) {
        const status = e.details && e.details.status;
        const retryable =
          e instanceof NetworkError || e instanceof RateLimitError || [502, 503, 504].includes(status);
        if (!retryable || attempt >= this.maxRetries) throw e;
        const backoff = 200 * 2 ** attempt;
        const after = e instanceof RateLimitError && e.retryAfter ? e.retryAfter * 1000 : 0;
        await sleep(Math.min(Math.max(backoff, after), 30_000));
      }
    }
  }

  /**
   * One request to the proxy; resolves with the parsed JSON reply or rejects with an
   * `AssegaiError`. `timeout: 0` means no client-side limit; `fresh` skips the connection pool.
   * Uses `node:http` rather than `fetch`, whose built-in 300 s header timeout would cut off a
   * transaction waiting for a person.
   */
  #send(method, path, body, { timeout = this.timeout, auth = true, fresh = false } = {}) {
    const url = new URL(this.apiProxyUrl + path);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers = { Accept: 'application/json' };
    if (payload) {
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = String(payload.length);
    }
    if (auth) {
      headers['X-Assegai-Agent-ID'] = this.agentId;
      headers['X-Assegai-Agent-Token'] = this.agentToken;
    }
    if (this.debugEnabled) console.log(`[AssegaiSDK] ${method} ${path}`);
    const transport = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const options = fresh ? { method, headers, agent: false } : { method, headers };
      const req = transport.request(url, options, (res) => {
        const chunks = [];
        res.on('data', (chunk) => chunks.push(chunk));
        res.on('error', (e) => reject(new NetworkError(e.message)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try {
            json = text ? JSON.parse(text) : {};
          } catch {
            json = undefined;
          }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            if (json === undefined) {
              reject(new ApiError(`unreadable reply from the proxy: ${text.slice(0, 200)}`, status));
            } else {
              resolve(json);
            }
            return;
          }
          const retryAfter = Number.parseInt(res.headers['retry-after'] ?? '', 10);
          const errorBody = json && typeof json === 'object' ? json : { error: text.slice(0, 500) };
          reject(errorFromResponse(status, errorBody, Number.isNaN(retryAfter) ? undefined : retryAfter));
        });
      });
      req.on('error', (e) => {
        reject(e instanceof AssegaiError ? e : new NetworkError(`${method} ${url.origin}${path}: ${e.message}`));
      });
      if (timeout > 0) {
        req.setTimeout(timeout, () => {
          req.destroy(new TimeoutError(`Request to ${path} timed out after ${timeout}ms`));
        });
      }
      req.end(payload);
    });
  }
}

export default AssegaiSDK;
