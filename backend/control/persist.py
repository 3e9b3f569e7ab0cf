"""Acknowledged means saved: the dispatcher that writes the state journal before a reply.

With ``--state-dir``, every command that may change state runs through
:class:`JournaledDispatcher`: once the handler is done, the daemon's state is snapshot
and written atomically (``backend.journal``) *before* the reply goes out, so a client
that saw ``{}`` knows the change survives a SIGKILL. Queries write nothing; a state
equal to the last one written is not written again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from ..daemon import Daemon
from ..daemon_state import snapshot
from ..errors import CommandError, JournalError
from ..journal import StateJournal
from .commands import Dispatcher

log = logging.getLogger(__name__)

NO_STATE = frozenset({"dm-wait", "quit"})
"""Commands besides ``query-*`` that never change what the journal holds."""


class Persister:
    """Writes the daemon's snapshot to the journal, one write at a time, newest last."""

    def __init__(self, daemon: Daemon, journal: StateJournal) -> None:
        self.daemon = daemon
        self.journal = journal
        self._lock = asyncio.Lock()
        self._last: dict[str, Any] | None = None

    async def save(self) -> None:
        """Write the current state if it changed; JournalError if it could not be."""
        async with self._lock:
            # Taken under the lock: whichever save runs last writes the newest state.
            state = snapshot(self.daemon)
            if state == self._last:
                return
            # fsync stays off the loop; shielded so a cancelled command cannot leave a
            # write running behind the lock.
            await asyncio.shield(asyncio.to_thread(self.journal.write, state))
            self._last = state


class JournaledDispatcher(Dispatcher):
    """A Dispatcher whose state-changing commands reply only once the state is saved."""

    def __init__(self, daemon: Daemon, persister: Persister) -> None:
        super().__init__(daemon)
        self.persister = persister

    async def execute(self, name: str, arguments: Mapping[str, object]) -> object:
        if name.startswith("query-") or name in NO_STATE:
            return await super().execute(name, arguments)
        try:
            result = await super().execute(name, arguments)
        except CommandError:
            # A refused command changes nothing, but save anyway: cheap when unchanged,
            # and right if a failure did leave something behind.
            try:
                await self.persister.save()
            except JournalError:
                log.exception("saving the state after a failed %s failed", name)
            raise
        try:
            await self.persister.save()
        except JournalError as e:
            raise CommandError(f"{name}: done, but the state was not saved: {e}") from e
        return result
