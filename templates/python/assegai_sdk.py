"""A small client for the local Assegai proxy, standard library only.

It offers the methods and error classes of the original TypeScript SDK (`@assegailabs/sdk`) and of
this project's Node template (`sdk.js`), with Python names (`getWalletAddress` is
`get_wallet_address`), so an agent reads the same in any of them:

    from assegai_sdk import AssegaiSDK
    sdk = AssegaiSDK()
    address = sdk.get_wallet_address("eip155:31337")

The agent holds only an id and a token (ASSEGAI_AGENT_ID, ASSEGAI_AGENT_TOKEN); keys, the wallet and
the spending policy stay in the proxy (ASSEGAI_API_PROXY).

Calls block: an agent is one loop that waits for the chain, for a model or for a person, and plain
blocking code says that most simply. Use threads if you need to do several things at once; one
`AssegaiSDK` may be shared between them.

Amounts are wei, as Python ints (exact at any size); `request_transaction` also takes a decimal
string. Floats are refused wherever money is concerned: 0.1 ETH has no exact float.
"""

import json
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException
from typing import Any, Dict, List, Optional, Union

__all__ = [
    "AssegaiSDK",
    "ErrorCode",
    "AssegaiError",
    "AuthenticationError",
    "ForbiddenError",
    "NotFoundError",
    "RateLimitError",
    # TimeoutError is left out on purpose: `from assegai_sdk import *` would hide Python's own
    # TimeoutError. Import it by name (`from assegai_sdk import TimeoutError as SdkTimeoutError`).
    "NetworkError",
    "ValidationError",
    "TransactionRejectedError",
    "TransactionTimeoutError",
    "InsufficientAllowanceError",
    "RpcError",
    "ApiError",
    "error_from_response",
]

DEFAULT_API_PROXY = "http://host.docker.internal:8765"
# Seconds a chain read, a log line or the wallet lookup may take.
DEFAULT_TIMEOUT = 30.0
# Seconds an AI call may take: long answers are slow.
DEFAULT_AI_TIMEOUT = 600.0
# How many times reads are retried on a network error, 429, 502, 503 or 504.
DEFAULT_MAX_RETRIES = 2
# The longest pause between two tries of a read, in seconds.
MAX_BACKOFF = 30.0

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


class ErrorCode:
    """Machine codes of the SDK's errors (`error.code`), the same strings as sdk.js."""

    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    RATE_LIMITED = "RATE_LIMITED"
    TIMEOUT = "TIMEOUT"
    NETWORK_ERROR = "NETWORK_ERROR"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    TRANSACTION_REJECTED = "TRANSACTION_REJECTED"
    TRANSACTION_TIMEOUT = "TRANSACTION_TIMEOUT"
    INSUFFICIENT_ALLOWANCE = "INSUFFICIENT_ALLOWANCE"
    RPC_ERROR = "RPC_ERROR"
    API_ERROR = "API_ERROR"
    UNKNOWN = "UNKNOWN"


# ---- Errors -------------------------------------------------------------------------------------


class AssegaiError(Exception):
    """Every error this module raises, so one `except AssegaiError` covers the proxy.

    `message` is the proxy's own words; `details["status"]` is the HTTP status and
    `details["code"]` the proxy's machine code, when there was a reply.
    """

    def __init__(self, code: str, message: str, details: Optional[Dict[str, Any]] = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_dict(self) -> Dict[str, Any]:
        """The error as plain data, for a log line's `data` or a JSON report."""
        out: Dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            out["details"] = self.details
        return out


class AuthenticationError(AssegaiError):
    """401: the agent id or token is missing or wrong."""

    def __init__(self, message: str = "Authentication failed", details: Optional[Dict[str, Any]] = None):
        super().__init__(ErrorCode.UNAUTHORIZED, message, details)


class ForbiddenError(AssegaiError):
    """403: the agent's policy forbids this (chain, contract, spending limit, paused agent...)."""

    def __init__(self, message: str = "Access forbidden", details: Optional[Dict[str, Any]] = None):
        super().__init__(ErrorCode.FORBIDDEN, message, details)


class NotFoundError(AssegaiError):
    """404: no such route, or no such transaction of this agent's.

    sdk.js raises a plain AssegaiError with code NOT_FOUND here; a class of its own lets Python
    code say `except NotFoundError`, and it is still an AssegaiError with that code.
    """

    def __init__(self, message: str = "Not found", details: Optional[Dict[str, Any]] = None):
        super().__init__(ErrorCode.NOT_FOUND, message, details)


class RateLimitError(AssegaiError):
    """429: too many requests; `retry_after` is in seconds when the proxy said (else None)."""

    def __init__(
        self,
        message: str = "Rate limit exceeded",
        retry_after: Optional[int] = None,
        details: Optional[Dict[str, Any]] = None,
    ):
        super().__init__(ErrorCode.RATE_LIMITED, message, details)
        self.retry_after = retry_after


class TimeoutError(AssegaiError):
    """The proxy did not answer in time.

    Named as in sdk.js and the TypeScript SDK; it is not Python's builtin TimeoutError (see `__all__`).
    """

    def __init__(self, message: str = "Request timed out", details: Optional[Dict[str, Any]] = None):
        super().__init__(ErrorCode.TIMEOUT, message, details)


class NetworkError(AssegaiError):
    """The proxy could not be reached, or the connection broke."""

    def __init__(self, message: str = "Network error", details: Optional[Dict[str, Any]] = None):
        super().__init__(ErrorCode.NETWORK_ERROR, message, details)


class ValidationError(AssegaiError):
    """A request this module refused to send because it is malformed."""

    def __init__(self, message: str, details: Optional[Dict[str, Any]] = None):
        super().__init__(ErrorCode.VALIDATION_ERROR, message, details)


class TransactionRejectedError(AssegaiError):
    """The user rejected the transaction."""

    def __init__(self, message: str = "Transaction rejected by user", details: Optional[Dict[str, Any]] = None):
        super().__init__(ErrorCode.TRANSACTION_REJECTED, message, details)


class TransactionTimeoutError(AssegaiError):
    """Nobody approved the transaction in time."""

    def __init__(self, message: str = "Transaction approval timeout", details: Optional[Dict[str, Any]] = None):
        super().__init__(ErrorCode.TRANSACTION_TIMEOUT, message, details)


class InsufficientAllowanceError(AssegaiError):
    """A token transfer without an allowance, or above it."""

    def __init__(self, message: str = "Insufficient spending allowance", details: Optional[Dict[str, Any]] = None):
        super().__init__(ErrorCode.INSUFFICIENT_ALLOWANCE, message, details)


class RpcError(AssegaiError):
    """The node answered a chain query with an error (`RPC Error: ...`)."""

    def __init__(self, message: str, rpc_code: Optional[int] = None, details: Optional[Dict[str, Any]] = None):
        super().__init__(ErrorCode.RPC_ERROR, message, details)
        self.rpc_code = rpc_code


class ApiError(AssegaiError):
    """Any other failure reply: a server error, or an AI provider's own error."""

    def __init__(self, message: str, status_code: Optional[int] = None, details: Optional[Dict[str, Any]] = None):
        super().__init__(ErrorCode.API_ERROR, message, details)
        self.status_code = status_code


def _message_of(body: Any, status: int) -> str:
    """The human message of an error body.

    The proxy's own errors carry a string `error`; an AI provider's, passed through, carry an object
    (`{"error": {"message": ...}}`), whose message is the useful part.
    """
    if isinstance(body, dict):
        for key in ("error", "message"):
            value = body.get(key)
            if isinstance(value, dict):
                value = value.get("message") or json.dumps(value)
            if value:
                return str(value)
    return f"Request failed with status {status}"


def error_from_response(status: int, body: Any, retry_after: Optional[int] = None) -> AssegaiError:
    """The error for a failure reply.

    First by the proxy's message (these strings are part of its protocol), then by status, as the
    original SDK does: a rejection is a 403 and an approval timeout a 500, and only the message
    tells them from a policy refusal or a server fault.
    """
    message = _message_of(body, status)
    details: Dict[str, Any] = {"status": status}
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        details["code"] = body["code"]
    if "allowance" in message:
        return InsufficientAllowanceError(message, details)
    if "rejected by user" in message:
        return TransactionRejectedError(message, details)
    if "approval timeout" in message:
        return TransactionTimeoutError(message, details)
    if "Rate limit" in message:
        return RateLimitError(message, retry_after, details)
    if "RPC Error" in message:
        return RpcError(message, None, details)
    if status == 401:
        return AuthenticationError(message, details)
    if status == 403:
        return ForbiddenError(message, details)
    if status == 404:
        return NotFoundError(message, details)
    if status == 408:
        return TimeoutError(message, details)
    if status == 429:
        return RateLimitError(message, retry_after, details)
    return ApiError(message, status, details)


# ---- HTTP plumbing ------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is never part of the proxy's protocol: show it as the failure it is."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


# No ProxyHandler environment lookup: an HTTP_PROXY meant for the internet must not carry the
# agent's token to some other machine. Each request gets a fresh connection (urllib keeps no pool),
# which `request_transaction` relies on: a pooled one the proxy has just closed would fail a request
# that must not be retried.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())

# Sentinel for "use the SDK's own timeout" (None already means "no limit").
_DEFAULT = object()


def _parse_retry_after(value: Optional[str]) -> Optional[int]:
    match = re.match(r"\s*(\d+)", value or "")
    return int(match.group(1)) if match else None


def _quantity(result: Any, method: str) -> int:
    """A JSON-RPC quantity ("0x1bc16d674ec80000") as an int, which Python keeps exact at any size."""
    if isinstance(result, int) and not isinstance(result, bool):
        return result
    if isinstance(result, str):
        try:
            return int(result, 16)
        except ValueError:
            pass
    raise ApiError(f"unexpected reply to {method}: {result!r}")


def _field(reply: Any, name: str) -> Any:
    return reply.get(name) if isinstance(reply, dict) else None


def _env(name: str) -> Optional[str]:
    # Empty counts as unset, as in sdk.js.
    return os.environ.get(name) or None


# ---- The client ---------------------------------------------------------------------------------


class AssegaiSDK:
    """A client for the Assegai proxy.

    Everything is optional; the environment fills the gaps, so `AssegaiSDK()` is right under
    `assegai run`.

    Args:
        api_proxy_url: Default ASSEGAI_API_PROXY, else http://host.docker.internal:8765.
        agent_id: Default ASSEGAI_AGENT_ID.
        agent_token: Default ASSEGAI_AGENT_TOKEN.
        timeout: Seconds for reads and logs (default 30). Transaction requests wait as long as the
            proxy holds them (until a person decides, or its approval timeout). sdk.js counts in
            milliseconds; Python counts in seconds.
        ai_timeout: Seconds for `call_claude` / `call_openai` (default 600).
        max_retries: Retries of reads on network errors, 429, 502-504 (default 2).
        debug: Print each request on stdout (default False).

    Raises:
        AuthenticationError: The agent id or token is missing.
        ValidationError: The proxy URL is not http(s).
    """

    def __init__(
        self,
        api_proxy_url: Optional[str] = None,
        agent_id: Optional[str] = None,
        agent_token: Optional[str] = None,
        timeout: Optional[float] = None,
        ai_timeout: Optional[float] = None,
        max_retries: Optional[int] = None,
        debug: bool = False,
    ):
        url = api_proxy_url if api_proxy_url is not None else _env("ASSEGAI_API_PROXY") or DEFAULT_API_PROXY
        self.api_proxy_url = url.rstrip("/")
        self.agent_id = agent_id if agent_id is not None else _env("ASSEGAI_AGENT_ID") or ""
        self.agent_token = agent_token if agent_token is not None else _env("ASSEGAI_AGENT_TOKEN") or ""
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self.ai_timeout = DEFAULT_AI_TIMEOUT if ai_timeout is None else ai_timeout
        self.max_retries = DEFAULT_MAX_RETRIES if max_retries is None else max_retries
        self.debug_enabled = debug
        if not self.agent_id or not self.agent_token:
            raise AuthenticationError(
                "Agent ID and token are required: set ASSEGAI_AGENT_ID and ASSEGAI_AGENT_TOKEN "
                "(`assegai run` does), or pass agent_id and agent_token."
            )
        if not re.match(r"https?://", self.api_proxy_url):
            raise ValidationError(f"proxy URL `{self.api_proxy_url}` is not an http(s) URL")

    # ---- Wallet and chain -----------------------------------------------------------------------

    def get_wallet_address(self, chain: str) -> str:
        """The address the proxy signs with on `chain` (CAIP-2, e.g. "eip155:31337").

        The wallet is the user's, not the agent's; this is how the agent learns whose money it asks for.
        """
        reply = self._read("GET", "/agent/wallet-address/" + urllib.parse.quote(chain, safe=":"))
        return _field(reply, "address")

    def query_chain(self, chain: str, method: str, params: Optional[List[Any]] = None) -> Any:
        """Calls a read-only JSON-RPC method on a chain the manifest allows; returns its `result` as is.

        The proxy holds the RPC endpoint and refuses anything that writes or signs, so this is the
        whole of the agent's chain access.
        """
        reply = self._read("POST", "/agent/query-chain", {"chain": chain, "method": method, "params": params or []})
        return _field(reply, "result")

    def get_balance(self, chain: str, address: str) -> int:
        """The native balance of `address`, in wei, as an int.

        sdk.js returns the node's hex string; Python's ints are exact at any size, so the hex is
        decoded here (`query_chain(chain, "eth_getBalance", [address, "latest"])` gives it raw).
        """
        return _quantity(self.query_chain(chain, "eth_getBalance", [address, "latest"]), "eth_getBalance")

    def get_transaction_count(self, chain: str, address: str) -> int:
        """The nonce of `address`, as an int."""
        return _quantity(
            self.query_chain(chain, "eth_getTransactionCount", [address, "latest"]), "eth_getTransactionCount"
        )

    def get_gas_price(self, chain: str) -> int:
        """The gas price in wei, as an int."""
        return _quantity(self.query_chain(chain, "eth_gasPrice", []), "eth_gasPrice")

    def get_block_number(self, chain: str) -> int:
        """The latest block number, as an int."""
        return _quantity(self.query_chain(chain, "eth_blockNumber", []), "eth_blockNumber")

    def is_contract(self, chain: str, address: str) -> bool:
        """Whether `address` holds code: a transfer to a contract may run arbitrary logic."""
        code = self.query_chain(chain, "eth_getCode", [address, "latest"])
        return isinstance(code, str) and code not in ("0x", "0x0")

    # ---- Transactions ---------------------------------------------------------------------------

    def request_transaction(
        self,
        chain: str,
        to: str,
        value: Union[int, str],
        data: Optional[str] = None,
        gas_limit: Union[int, str, None] = None,
    ) -> str:
        """Asks for a transaction and waits until a person approves or rejects it.

        Returns the hash once the user's wallet has signed and broadcast it. Never retried: a retry
        could pay twice. No client-side time limit either: the proxy holds the request until
        someone decides, or until its own approval timeout (5 minutes by default).

        Args:
            chain: CAIP-2 chain id, e.g. "eip155:31337".
            to: Recipient or contract address.
            value: Wei, as an int or a decimal string (never a float).
            data: Calldata, 0x-prefixed hex.
            gas_limit: Without it the proxy uses 21000 for a plain transfer and estimates a call.

        Raises:
            TransactionRejectedError: The user said no.
            TransactionTimeoutError: Nobody answered in time.
            InsufficientAllowanceError: A token transfer without (enough) allowance.
            ForbiddenError: Any other policy refusal (chain, contract, spending limit).
        """
        if not chain:
            raise ValidationError("chain is required")
        if not isinstance(to, str) or not _ADDRESS.fullmatch(to):
            raise ValidationError('Invalid "to" address')
        if value is None or value == "":
            raise ValidationError("value is required")
        body: Dict[str, Any] = {"chain": chain, "to": to, "value": _integer_text(value, "value")}
        if data:
            body["data"] = data
        if gas_limit:
            body["gasLimit"] = _integer_text(gas_limit, "gas_limit")
        reply = self._send("POST", "/agent/request-transaction", body, timeout=None)
        return _field(reply, "txHash")

    def get_transaction(self, transaction_id: str) -> Dict[str, Any]:
        """Where one of this agent's transaction requests stands (`status`, `txHash`...)."""
        return self._read("GET", "/agent/transactions/" + urllib.parse.quote(str(transaction_id), safe=""))

    # ---- AI -------------------------------------------------------------------------------------

    def call_claude(self, options: Optional[Dict[str, Any]] = None, **fields: Any) -> Dict[str, Any]:
        """Anthropic's Messages API through the proxy, which adds the user's key.

        Pass the request as a dict or as keywords (`call_claude(model=..., messages=[...])`);
        `max_tokens` defaults to 4096. The manifest must list `anthropic` in `permissions.apis`.
        Not retried: a model call costs money.
        """
        body = {**(options or {}), **fields}
        if body.get("max_tokens") is None:
            body["max_tokens"] = 4096
        return self._send("POST", "/api/anthropic/v1/messages", body, timeout=self.ai_timeout)

    def call_openai(self, options: Optional[Dict[str, Any]] = None, **fields: Any) -> Dict[str, Any]:
        """OpenAI's Chat Completions API through the proxy (`openai` in `permissions.apis`)."""
        body = {**(options or {}), **fields}
        return self._send("POST", "/api/openai/v1/chat/completions", body, timeout=self.ai_timeout)

    # ---- Logging --------------------------------------------------------------------------------

    def log(self, level: str, message: Any, data: Any = None) -> None:
        """Sends a line to the proxy, which keeps it for `assegai logs` (and `assegai run` shows it
        with the agent's output, so it is not printed here too).

        Never raises: a log line must not be what stops an agent. A line the proxy does not take is
        printed on stderr instead, as `[level] message (not sent to the Assegai proxy: why)`.

        Args:
            level: "debug", "info", "warn", "error" or "success".
            message: The text.
            data: Structured detail (anything JSON can hold), stored with the line.
        """
        level = str(level)
        try:
            body: Dict[str, Any] = {"level": level, "message": str(message)}
            if data is not None:
                body["data"] = data
            self._send("POST", "/agent/log", body)
        except Exception as e:  # anything at all: see the docstring
            print(f"[{level}] {message} (not sent to the Assegai proxy: {e})", file=sys.stderr, flush=True)

    def debug(self, message: Any, data: Any = None) -> None:
        self.log("debug", message, data)

    def info(self, message: Any, data: Any = None) -> None:
        self.log("info", message, data)

    def warn(self, message: Any, data: Any = None) -> None:
        self.log("warn", message, data)

    def error(self, message: Any, data: Any = None) -> None:
        self.log("error", message, data)

    def success(self, message: Any, data: Any = None) -> None:
        self.log("success", message, data)

    # ---- Utilities ------------------------------------------------------------------------------

    def get_agent_id(self) -> str:
        return self.agent_id

    def is_configured(self) -> bool:
        return bool(self.agent_id and self.agent_token)

    def health_check(self) -> bool:
        """Whether the proxy answers `GET /health`. Never raises: it is a question, not a request."""
        try:
            reply = self._send("GET", "/health", auth=False)
        except Exception:
            return False
        return _field(reply, "status") == "ok"

    # ---- HTTP -----------------------------------------------------------------------------------

    def _read(self, method: str, path: str, body: Any = None) -> Any:
        """An idempotent call: retried with backoff on network errors, 429 and 502-504."""
        attempt = 0
        while True:
            try:
                return self._send(method, path, body)
            except AssegaiError as e:
                status = e.details.get("status") if isinstance(e.details, dict) else None
                retryable = isinstance(e, (NetworkError, RateLimitError)) or status in (502, 503, 504)
                if not retryable or attempt >= self.max_retries:
                    raise
                backoff = 0.2 * 2**attempt
                after = e.retry_after if isinstance(e, RateLimitError) and e.retry_after else 0
                time.sleep(min(max(backoff, after), MAX_BACKOFF))
                attempt += 1

    def _send(self, method: str, path: str, body: Any = None, timeout: Any = _DEFAULT, auth: bool = True) -> Any:
        """One request to the proxy: the parsed JSON reply, or an AssegaiError.

        `timeout=None` means no client-side limit. urllib's timeout, like Node's, bounds each wait
        on the socket, not the whole exchange.
        """
        if timeout is _DEFAULT:
            timeout = self.timeout
        payload = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        if auth:
            headers["X-Assegai-Agent-ID"] = self.agent_id
            headers["X-Assegai-Agent-Token"] = self.agent_token
        if self.debug_enabled:
            print(f"[AssegaiSDK] {method} {path}", flush=True)
        url = self.api_proxy_url + path
        request = urllib.request.Request(url, data=payload, headers=headers, method=method)
        retry_after = None
        try:
            with _OPENER.open(request, timeout=timeout or None) as response:
                status = response.status
                text = response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            status = e.code
            retry_after = _parse_retry_after(e.headers.get("Retry-After") if e.headers else None)
            try:
                text = e.read().decode("utf-8", "replace")
            except (OSError, HTTPException):
                text = ""
            finally:
                e.close()
        except urllib.error.URLError as e:
            if isinstance(e.reason, socket.timeout):
                raise TimeoutError(f"Request to {path} timed out after {timeout}s") from e
            raise NetworkError(f"{method} {self._origin()}{path}: {e.reason}") from e
        except socket.timeout as e:
            raise TimeoutError(f"Request to {path} timed out after {timeout}s") from e
        except (OSError, HTTPException) as e:
            raise NetworkError(f"{method} {self._origin()}{path}: {str(e) or type(e).__name__}") from e

        try:
            reply = json.loads(text) if text else {}
        except ValueError:
            reply = None
        if 200 <= status < 300:
            if reply is None:
                raise ApiError(f"unreadable reply from the proxy: {text[:200]}", status)
            return reply
        error_body = reply if isinstance(reply, dict) else {"error": text[:500]}
        raise error_from_response(status, error_body, retry_after)

    def _origin(self) -> str:
        parts = urllib.parse.urlsplit(self.api_proxy_url)
        return f"{parts.scheme}://{parts.netloc}"


def _integer_text(amount: Union[int, str], name: str) -> str:
    """`amount` as the decimal string the proxy wants.

    Only ints and strings: a float cannot hold most wei amounts exactly, and `str()` of a Decimal
    may come out as "1E+14", which is no decimal the proxy reads.
    """
    if isinstance(amount, bool) or not isinstance(amount, (int, str)):
        raise ValidationError(f"{name} must be an int or a decimal string, not {type(amount).__name__}")
    return str(amount)
