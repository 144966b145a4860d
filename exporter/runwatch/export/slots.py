"""Spool slots: several runwatch processes may share a data directory. Each takes
the first slot directory `<base>/<k>` whose lock it can get (flock, held for as long
as the process runs), and a new process on that slot resends what an earlier one left.
Used by the Loki spool and the remote-write spool."""
from __future__ import annotations

import errno
import fcntl
import os

from ..settings import ensure_private_dir


def take_slot(base: str) -> tuple[str, int]:
    """(the slot directory, the fd holding its lock): the first free slot under base."""
    ensure_private_dir(base)
    k = 0
    while True:
        d = os.path.join(base, str(k))
        ensure_private_dir(d)
        fd = os.open(os.path.join(d, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return d, fd
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            k += 1
