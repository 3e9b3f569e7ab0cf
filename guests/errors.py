"""The guests package's exception, on its own.

guests/ drives QEMU and knows nothing of the backend it is a guest of, so its error is
not part of backend/errors.py's tree::

    GuestError     a guest failed to boot, its agent failed, or a workload could not run

Root causes are kept with ``raise ... from``.
"""

from __future__ import annotations


class GuestError(Exception):
    """A guest failed to boot, its agent failed, or a workload could not run."""
