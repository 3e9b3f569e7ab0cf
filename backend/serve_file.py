"""Serve one file as a vhost-user-blk export, with nothing between (tests, benchmarks).

``python -m backend.serve_file IMAGE SOCKET [--read-only] [--num-queues N]
[--serial S] [--ready-fd FD [--progress-every N]]`` runs until SIGTERM/SIGINT; SIGUSR1
drops the current front-end (it reconnects if it can). With ``--ready-fd`` it writes
"ready\\n" to that fd once the socket listens, and "progress N\\n" after every N completed
bios, so a parent waits on a pipe instead of polling. It exists so a backend can be
SIGKILLed and restarted for real (reconnect tests) and measured on its own (CPU per I/O)
before the daemon exists. It joins vhost/ to a devices/ file, so it lives above both
(vhost/ serves any sink and never imports devices/).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

from backend import eventloop
from backend.blockio import Bio, BioSink, Status
from backend.devices.file import FileDevice
from backend.vhost.blk import VhostUserBlkExport
from backend.vhost.devsink import DeviceSink


class ProgressSink:
    """Pass bios through; write "progress N" to ``fd`` after every ``every`` completions."""

    def __init__(self, sink: BioSink, fd: int, every: int) -> None:
        self.sink = sink
        self.fd = fd
        self.every = every
        self.completed = 0

    @property
    def size_sectors(self) -> int:
        return self.sink.size_sectors

    def submit_bio(self, bio: Bio) -> None:
        done = bio.done

        def counted(status: Status) -> None:
            self.completed += 1
            if self.completed % self.every == 0:
                os.write(self.fd, f"progress {self.completed}\n".encode())
            done(status)

        # a bio of its own: vhost/'s requests end through a method, not a settable slot
        self.sink.submit_bio(Bio(bio.op, bio.sector, bio.nr_sectors, bio.iovecs, counted,
                                 preflush=bio.preflush, fua=bio.fua))


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    device = FileDevice("file", args.image, read_only=args.read_only, workers=args.workers)
    sink: BioSink = DeviceSink(device)
    if args.ready_fd is not None and args.progress_every:
        sink = ProgressSink(sink, args.ready_fd, args.progress_every)
    export = VhostUserBlkExport(
        "file", sink, args.socket, num_queues=args.num_queues,
        writable=not args.read_only, serial=args.serial,
    )
    export.start()
    loop.add_signal_handler(signal.SIGUSR1, export.disconnect)
    if args.ready_fd is not None:
        os.write(args.ready_fd, b"ready\n")
    try:
        await stop.wait()
    finally:
        await export.close()
        device.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("socket")
    parser.add_argument("--read-only", action="store_true")
    parser.add_argument("--num-queues", type=int, default=1)
    parser.add_argument("--serial", default="")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--ready-fd", type=int)
    parser.add_argument("--progress-every", type=int, default=0)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--loop", choices=eventloop.LOOPS,
                        help=f"event loop (default: ${eventloop.ENV}, else uvloop if installed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    eventloop.run(serve(args), args.loop)


if __name__ == "__main__":
    main()
