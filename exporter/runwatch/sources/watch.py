"""Wake the file poller when a followed file changes, instead of polling on a timer.

On Linux, one inotify watch per *directory* that holds followed files reports
every write, creation, rename and deletion of the files in it; the poller
then polls only the followers whose path was named. Directory watches (not
file watches) are what following by name needs: a file that is rotated away,
re-created or that does not exist yet is still seen.

What inotify does not see, a slower rescan catches: every follower is polled
at least every `rescan` seconds anyway (network and overlay filesystems,
where inotify is silent; a directory that could not be watched; a queue
overflow). A follower in the middle of a rotation (draining its old file,
whose writes carry another name) is polled at the fast interval until its
grace runs out.

Where inotify is missing (not Linux, no libc symbol, out of watches), the
`Watcher` reports `available = False` and the poller falls back to polling
every file at its interval, as before. Stdlib only (ctypes).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import select
import struct

log = logging.getLogger("runwatch")

# <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

DIR_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
            | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
_EVENT = struct.Struct("iIII")          # wd, mask, cookie, len (then len bytes of name)
_READ_BYTES = 64 * 1024


# Filesystems where inotify sees only this machine's own writes (or nothing):
# files on them are polled, not watched.
REMOTE_FS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "lustre", "gpfs", "afs",
             "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone", "fuse.blobfuse", "virtiofs", "vboxsf")


def mount_types(mountinfo: str = "/proc/self/mountinfo") -> list[tuple[bytes, str]]:
    """(mount point, filesystem type) of every mount, longest mount point first."""
    out = []
    try:
        with open(mountinfo, "rb") as f:
            for line in f:
                left, sep, right = line.partition(b" - ")
                fields, rest = left.split(), right.split()
                if sep and len(fields) >= 5 and rest:
                    point = fields[4].replace(b"\\040", b" ").replace(b"\\011", b"\t")
                    out.append((point, rest[0].decode("ascii", "replace")))
    except OSError:
        pass
    return sorted(out, key=lambda m: len(m[0]), reverse=True)


def fs_type(directory: bytes, mounts: list[tuple[bytes, str]]) -> str | None:
    for point, kind in mounts:
        if directory == point or directory.startswith(point.rstrip(b"/") + b"/"):
            return kind
    return None


def _libc():
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        lib.inotify_init1.argtypes = [ctypes.c_int]
        lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        lib.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        return lib
    except (OSError, AttributeError):
        return None


class Watcher:
    """inotify on the directories of a set of paths.

    `watch(path)` -> True when changes of that path will be reported;
    `wait(timeout)` blocks until something changed or the timeout passed and
    returns the set of watched paths named by the events, or None for
    "anything may have changed" (queue overflow, a watched directory gone).
    """

    def __init__(self, enabled: bool = True):
        self.fd = -1
        self._lib = _libc() if enabled else None
        self._dirs: dict[bytes, int] = {}              # directory -> wd
        self._names: dict[int, dict[bytes, set[str]]] = {}   # wd -> file name -> paths
        self.lost: set[str] = set()          # paths whose directory watch went away
        self._mounts = mount_types()
        if self._lib is not None:
            fd = self._lib.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if fd >= 0:
                self.fd = fd
            else:
                log.info("file watching: inotify unavailable (%s); polling instead",
                         os.strerror(ctypes.get_errno()))

    @property
    def available(self) -> bool:
        return self.fd >= 0

    def watch(self, path: str) -> bool:
        if self.fd < 0:
            return False
        full = os.path.abspath(path)
        d, name = os.path.split(os.fsencode(full))
        wd = self._dirs.get(d)
        if wd is None:
            real = os.path.realpath(d)
            if fs_type(real, self._mounts) in REMOTE_FS:
                return False          # inotify would miss other hosts' writes: poll it
            wd = self._lib.inotify_add_watch(self.fd, d, DIR_MASK)
            if wd < 0:
                err = ctypes.get_errno()
                if err == errno.ENOSPC:
                    log.warning("file watching: out of inotify watches (fs.inotify.max_user_watches); "
                                "%s is polled instead", path)
                return False          # missing directory, permissions ...: the rescan covers it
            self._dirs[d] = wd
            self._names.setdefault(wd, {})
        self._names[wd].setdefault(name, set()).add(path)
        return True

    def wait(self, timeout: float) -> set[str] | None:
        if self.fd < 0:
            return set()
        try:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        except InterruptedError:
            return set()
        if not ready:
            return set()
        return self.read()

    def read(self) -> set[str] | None:
        """The paths named by the events queued now (None: poll everything)."""
        changed: set[str] = set()
        everything = False
        while True:
            try:
                buf = os.read(self.fd, _READ_BYTES)
            except BlockingIOError:
                break
            except OSError:
                return None
            if not buf:
                break
            pos = 0
            while pos + _EVENT.size <= len(buf):
                wd, mask, _cookie, n = _EVENT.unpack_from(buf, pos)
                name = buf[pos + _EVENT.size: pos + _EVENT.size + n].rstrip(b"\0")
                pos += _EVENT.size + n
                if mask & IN_Q_OVERFLOW:
                    everything = True
                    continue
                names = self._names.get(wd)
                if names is None:
                    continue
                if mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF):
                    self._forget(wd)      # the directory went away: re-watched on the next rescan
                    everything = True
                    continue
                changed |= names.get(name, set())
            if len(buf) < _READ_BYTES:
                break
        return None if everything else changed

    def _forget(self, wd: int) -> None:
        names = self._names.pop(wd, {})
        for d, w in list(self._dirs.items()):
            if w == wd:
                del self._dirs[d]
        self.lost |= {p for ps in names.values() for p in ps}

    def take_lost(self) -> set[str]:
        """The paths whose directory watch went away since the last call."""
        lost, self.lost = self.lost, set()
        return lost

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
