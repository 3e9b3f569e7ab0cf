"""delay: ``<dev> <offset> <ms> [<wdev> <woffset> <wms> [<fdev> <foffset> <fms>]]`` - dm-delay.

Reads (and, with three arguments, everything) go to ``dev`` after ``ms`` milliseconds;
the second triple sets where writes (and discards) go and how late, the third the same for
flushes (writes' triple if absent). A delay of 0 maps straight through. Delayed clones
wait on one list, in order, and one timer (the context's ``call_at``) issues those that expired.
presuspend issues the whole list at once and stops delaying until resume, as the
kernel's delay_presuspend does, so a suspend never waits for a delay to run out.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from backend.blockio import BlockDevice, Op
from backend.dm.args import ArgReader
from backend.dm.clock import Handle
from backend.dm.registry import register
from backend.dm.target import Clone, MapResult, StatusType, Target
from backend.errors import TableError


@dataclass
class DelayClass:
    """One ``<dev> <offset> <ms>`` triple (the kernel's struct delay_class)."""

    dev_name: str
    start: int
    delay_ms: int
    dev: BlockDevice
    ops: int = 0
    """Clones of this class waiting on the list now (what status INFO counts)."""
    delayed: int = 0
    """Clones of this class ever delayed (evidence counter)."""

    def __str__(self) -> str:
        return f"{self.dev_name} {self.start} {self.delay_ms}"


@register("delay")
class DelayTarget(Target):
    """dm-delay 1.5: a list of (expiry, clone, class) and a timer for its earliest entry."""

    num_flush_bios = 1
    num_discard_bios = 1

    def ctr(self, args: list[str]) -> None:
        if len(args) not in (3, 6, 9):
            raise TableError("delay: Requires exactly 3, 6 or 9 arguments")
        # delay_ctr: absent triples repeat the previous one, each class counts its own.
        starts = {3: (0, 0, 0), 6: (0, 3, 3), 9: (0, 3, 6)}[len(args)]
        self.argc = len(args)
        self.read, self.write, self.flush = (self._class(args[i:i + 3]) for i in starts)
        self.delayed: deque[tuple[float, Clone, DelayClass]] = deque()
        self.may_delay = True
        self.issued_early = 0
        """Evidence: delayed I/Os a presuspend issued before their time."""
        self._timer: Handle | None = None
        self._timer_at = 0.0

    def _class(self, triple: list[str]) -> DelayClass:
        """delay_class_ctr: offset, delay, then the device."""
        reader = ArgReader(triple)
        name = reader.next("<dev>")
        if not triple[1].isdigit():
            raise TableError("delay: Invalid device sector")
        if not triple[2].isdigit() or int(triple[2]) >= 1 << 32:
            raise TableError("delay: Invalid delay")
        start, delay_ms = int(triple[1]), int(triple[2])
        dev = self.get_device(name, start, self.length)
        return DelayClass(name, start, delay_ms, dev)

    # --- I/O -------------------------------------------------------------------------

    def map(self, clone: Clone) -> MapResult:
        if clone.op is Op.READ:
            cls = self.read
        elif clone.op is Op.FLUSH:
            cls = self.flush  # delay_map: a REQ_PREFLUSH write uses the flush class
        else:
            cls = self.write
        clone.remap(cls.dev, cls.start + clone.target_offset)
        if not cls.delay_ms or not self.may_delay:
            return MapResult.REMAPPED
        expires = self.context.now() + cls.delay_ms / 1000
        cls.ops += 1
        cls.delayed += 1
        self.delayed.append((expires, clone, cls))
        self._arm(expires)
        return MapResult.SUBMITTED

    def _arm(self, when: float) -> None:
        """queue_timeout: keep the timer at the earliest expiry (timer_reduce)."""
        if self._timer is not None and self._timer_at <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self.context.call_at(when, self._flush_expired)

    def _flush_expired(self) -> None:
        self._timer = None
        self._flush_delayed(flush_all=False)

    def _flush_delayed(self, *, flush_all: bool) -> int:
        """flush_delayed_bios: issue the expired clones (or all) in order, re-arm for the
        rest. Returns how many were issued."""
        now = self.context.now() if self.delayed else 0.0
        due: list[Clone] = []
        waiting: deque[tuple[float, Clone, DelayClass]] = deque()
        for expires, clone, cls in self.delayed:
            if flush_all or expires <= now:
                cls.ops -= 1
                due.append(clone)
            else:
                waiting.append((expires, clone, cls))
        self.delayed = waiting
        if waiting and not flush_all:
            self._arm(min(expires for expires, _, _ in waiting))
        for clone in due:  # last: a device may complete (and call back) synchronously
            clone.issue()
        return len(due)

    # --- suspend / resume ------------------------------------------------------------

    def presuspend(self) -> None:
        """delay_presuspend: stop delaying and submit everything delayed at once."""
        self.may_delay = False
        self._cancel_timer()
        issued = self._flush_delayed(flush_all=True)
        self.issued_early += issued
        if issued:
            self.log.info("presuspend issued %d delayed I/Os early", issued)

    def resume(self) -> None:
        self.may_delay = True

    def dtr(self) -> None:
        self._cancel_timer()
        self._flush_delayed(flush_all=True)  # nothing is left behind a destroyed table

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- introspection ---------------------------------------------------------------

    def stats(self) -> dict[str, object]:
        """Evidence: I/Os delayed, per class and in all."""
        classes = {"read": self.read, "write": self.write, "flush": self.flush}
        per = {name: cls.delayed for name, cls in classes.items()}
        return {"delayed": sum(per.values()), "delayed-by-class": per,
                "issued-early": self.issued_early}

    def status(self, kind: StatusType) -> str:
        if kind is StatusType.INFO:
            return f"{self.read.ops} {self.write.ops} {self.flush.ops}"
        return " ".join(str(c) for c in (self.read, self.write, self.flush)[:self.argc // 3])

    def iterate_devices(self) -> list[BlockDevice]:
        return list({id(c.dev): c.dev for c in (self.read, self.write, self.flush)}.values())
