"""Raw memory at C speed: the process's address space as one writable memoryview.

The request path reads and writes memory it knows only by address: the elements and
iovec arrays libvhost-user allocates, the guest's request headers and status bytes (guest
RAM the library has mapped), the kernel's AIO completion ring. A ctypes call per access
(``string_at``, ``memset``) costs about 0.5 µs, most of it the foreign-call machinery;
``struct.unpack_from(fmt, MEMORY, addr)`` and ``MEMORY[addr] = byte`` do the same in about
0.1 µs. A 4 KiB request makes four such accesses on its way.

This is exactly as safe as those ctypes calls, and no safer: an address that is not
mapped faults the process. Only addresses the code got from the library, the kernel or
its own allocations are used.
"""

from __future__ import annotations

import ctypes

_USER_SPACE = 1 << 48
"""Every user-space address on x86_64 (47 bits) and aarch64 (48 bits)."""

MEMORY: memoryview = memoryview((ctypes.c_char * _USER_SPACE).from_address(0)).cast("B")
"""``MEMORY[addr]`` is the byte at ``addr``: index it, slice it, or hand it to struct's
``unpack_from``/``pack_into`` with the address as the offset."""
