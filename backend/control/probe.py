"""``python -m backend.control.probe QMP_PATH``: query-version back to back, timed.

The child half of :class:`~.testing.LivenessProbe`. It runs in its own process so
that what the test itself does (building a 1 MiB message, say) cannot pass for the
daemon being slow. Each line on stdout is one probe: the fastest of ``--rounds``
consecutive round trips, in seconds, then the CLOCK_MONOTONIC time it ended (the
same clock in every process, so a test can line probes up with what it sent). When
stdin closes it stops; a round trip still
unanswered then is reported as ``pending SECONDS`` (how long it has waited), so a
frozen daemon shows.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from qemu.qmp import QMPClient


async def probe(path: str, rounds: int) -> None:
    loop = asyncio.get_running_loop()
    client = QMPClient("probe")
    await client.connect(path)
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    stop = asyncio.ensure_future(stdin.read())
    print("ready", flush=True)
    pending: list[float] = []

    async def run() -> None:
        while True:
            best = float("inf")
            for _ in range(rounds):
                pending.append(loop.time())
                await client.execute("query-version")
                best = min(best, loop.time() - pending.pop())
            print(f"{best:.6f} {time.monotonic():.6f}", flush=True)

    task = asyncio.ensure_future(run())
    await asyncio.wait([stop, task], return_when=asyncio.FIRST_COMPLETED)
    if pending:
        print(f"pending {loop.time() - pending[0]:.6f}", flush=True)
    task.cancel()
    if task.done() and not task.cancelled() and task.exception() is not None:
        print(f"error {task.exception()!r}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("qmp")
    parser.add_argument("--rounds", type=int, default=3)
    ns = parser.parse_args()
    asyncio.run(probe(ns.qmp, ns.rounds))


if __name__ == "__main__":
    main()
