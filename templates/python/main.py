# {{name}}: an Assegai agent.
#
# It holds no key and no secret, only an id and a token for the local Assegai proxy
# (ASSEGAI_AGENT_ID, ASSEGAI_AGENT_TOKEN, ASSEGAI_API_PROXY, set by `assegai run`). The proxy reads
# the chain for it, checks every transaction against assegai.json, and asks a person before the
# user's wallet signs anything.
#
# What it does: logs the names of the environment variables it sees, reads its wallet address and
# balance on the first chain its manifest allows, asks for a 0.0001 ETH transfer there, then logs a
# heartbeat until it gets SIGTERM or Ctrl-C. What it logs goes to the proxy, and `assegai run`
# shows it with the agent's output (`assegai logs` later).
#
# Python 3.9 or later, standard library only.

import json
import os
import re
import signal
import sys
import threading
import time
from typing import Optional


class Shutdown(SystemExit):
    """Raised by the signal handler in the middle of whatever the agent is doing.

    An exception, not a flag, because the agent may be blocked for minutes in a transaction request
    that waits for a person, and only an exception gets it out of that at once. A SystemExit (status
    0), so that the `except Exception` of ordinary code does not swallow it, and so that one raised
    before `main` is running, during the imports below, still ends the agent quietly and cleanly.
    """

    def __init__(self, signal_name: str):
        super().__init__(0)
        self.signal_name = signal_name


def on_signal(signum: int, _frame: object) -> None:
    # One stop is enough: further signals are ignored while the goodbye (at most GOODBYE_SECS) runs.
    for other in (signal.SIGTERM, signal.SIGINT):
        signal.signal(other, signal.SIG_IGN)
    raise Shutdown(signal.Signals(signum).name)


# Installed before anything else, the SDK's import included, so that an early SIGTERM is a clean
# stop rather than a kill.
for _signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_signum, on_signal)

from assegai_sdk import (  # noqa: E402 - after the signal handlers, on purpose
    AssegaiSDK,
    ForbiddenError,
    InsufficientAllowanceError,
    TransactionRejectedError,
    TransactionTimeoutError,
)

# Its manifest, beside this file.
MANIFEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assegai.json")
# Who receives the example transfer.
RECIPIENT = "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045"
# 0.0001 ETH, in wei.
AMOUNT_WEI = 100_000_000_000_000
# Seconds between heartbeats unless HEARTBEAT_SECS says otherwise. `assegai run` hands the agent
# only ASSEGAI_* variables, PATH, HOME, LANG and TERM, so under it this default applies.
DEFAULT_HEARTBEAT_SECS = 30
# The proxy may be gone already when the agent is told to stop: do not hang on the goodbye.
GOODBYE_SECS = 2

sdk: Optional[AssegaiSDK] = None


def format_eth(wei: int) -> str:
    """`wei` as an exact decimal amount of ETH ("0.0001", "10000"): integers only, as floats would round."""
    whole, frac = divmod(wei, 10**18)
    if frac == 0:
        return str(whole)
    return f"{whole}.{str(frac).rjust(18, '0').rstrip('0')}"


def environment_names() -> str:
    # Names only, never values: a value could be a secret.
    return ", ".join(sorted(os.environ))


def heartbeat_secs() -> int:
    # Leading digits, as JavaScript's parseInt reads them ("10s" is 10).
    match = re.match(r"\s*([+-]?\d+)", os.environ.get("HEARTBEAT_SECS", ""))
    secs = int(match.group(1)) if match else 0
    return secs if secs > 0 else DEFAULT_HEARTBEAT_SECS


def manifest_chain() -> str:
    """The chain this agent works on: the first one its manifest allows (`permissions.chains`)."""
    with open(MANIFEST, encoding="utf-8") as file:
        chains = json.load(file).get("permissions", {}).get("chains", [])
    if not chains:
        raise ValueError("assegai.json allows no chain (`permissions.chains` is empty)")
    return str(chains[0])


def request_transfer(sdk: AssegaiSDK, chain: str) -> None:
    """Asks for the example transfer and waits for a person to decide.

    A "no" or no answer is part of normal life for an agent: it logs it and carries on.
    """
    sdk.info(f"requesting a transfer of {format_eth(AMOUNT_WEI)} ETH to {RECIPIENT}; it waits for your decision")
    try:
        tx_hash = sdk.request_transaction(chain=chain, to=RECIPIENT, value=AMOUNT_WEI)
    except TransactionRejectedError as error:
        sdk.warn(f"transfer rejected ({error}); carrying on")
    except TransactionTimeoutError as error:
        sdk.warn(f"nobody approved the transfer in time ({error}); carrying on")
    except (ForbiddenError, InsufficientAllowanceError) as error:
        sdk.error(f"the policy refused the transfer: {error}")
    else:
        sdk.success(f"transfer sent: {tx_hash}")


def run() -> None:
    global sdk
    sdk = AssegaiSDK()
    sdk.info(f"environment: {environment_names()}")

    chain = manifest_chain()
    address = sdk.get_wallet_address(chain)
    sdk.info(f"wallet on {chain}: {address}")
    wei = sdk.get_balance(chain, address)
    sdk.info(f"balance: {format_eth(wei)} ETH ({wei} wei)")

    request_transfer(sdk, chain)

    every = heartbeat_secs()
    started = time.monotonic()
    beats = 0
    while True:
        beats += 1
        # On a fixed schedule, so a slow log line does not push every later beat back. The signal
        # handler's exception ends this sleep at once.
        time.sleep(max(0.0, started + beats * every - time.monotonic()))
        sdk.info(f"heartbeat: up {int(time.monotonic() - started + 0.5)}s")


def say_goodbye(signal_name: str) -> None:
    if sdk is None:
        return
    # In a thread, to cap the wait: the proxy may be gone already.
    bye = threading.Thread(target=sdk.info, args=(f"received {signal_name}, shutting down",), daemon=True)
    bye.start()
    bye.join(GOODBYE_SECS)


def main() -> int:
    try:
        try:
            run()
        except Exception as error:
            message = f"{type(error).__name__}: {error}"
            if sdk is not None:
                sdk.error(f"stopping: {message}")
            else:
                print(f"error: {message} (start this agent with `assegai run .`)", file=sys.stderr, flush=True)
            return 1
    except Shutdown as stop:
        say_goodbye(stop.signal_name)
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
