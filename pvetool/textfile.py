"""Reading the small files an administrator names: plans, saved plans, token files, the config.

Every read is bounded: only a regular file is read (a FIFO would block forever, ``/dev/zero``
never ends, a directory is no text), and only up to a size limit, so no name given on the
command line can hang pvetool or fill its memory. The FIFO check happens without blocking: the
file is opened with ``O_NONBLOCK`` and checked with ``fstat`` before a byte is read.

`read_limited` returns the bytes or raises `UnreadableFile`, whose message completes
"<what> <path>: ..." for an administrator; `decode_utf8` turns bytes into text or names the
line of the first byte that is not UTF-8.

Imports: the standard library only (a leaf below settings, the planner and the CLI).
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["UnreadableFile", "decode_utf8", "read_limited"]

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class UnreadableFile(Exception):
    """A file that is not read: missing, not a regular file, too large, unreadable.

    `reason` is the part after the file's name ("is a FIFO (named pipe), not a regular file").
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def _size(limit_bytes: int) -> str:
    if limit_bytes >= 1024 * 1024:
        return f"{limit_bytes / (1024 * 1024):g} MiB"
    return f"{limit_bytes / 1024:g} KiB"


def read_limited(path: str | os.PathLike[str], limit_bytes: int) -> bytes:
    """The whole content of the regular file `path`, refused when larger than `limit_bytes`."""
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise UnreadableFile(name, "does not exist") from None
        raise UnreadableFile(name, f"cannot be read ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        for test, kind in _KINDS:
            if test(info.st_mode):
                raise UnreadableFile(name, f"is {kind}, not a regular file")
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile(name, "is not a regular file")
        if info.st_size > limit_bytes:
            raise UnreadableFile(
                name, f"is {info.st_size} bytes; files larger than {_size(limit_bytes)} are refused"
            )
        chunks: list[bytes] = []
        size = 0
        while True:  # the file may grow while it is read: stop one byte past the limit
            chunk = os.read(fd, min(1024 * 1024, limit_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > limit_bytes:
                raise UnreadableFile(
                    name, f"is larger than {_size(limit_bytes)}; such files are refused"
                )
        return b"".join(chunks)
    except OSError as exc:
        raise UnreadableFile(name, f"cannot be read ({exc.strerror})") from None
    finally:
        os.close(fd)


def decode_utf8(data: bytes, path: str) -> str:
    """`data` as text; `UnreadableFile` naming the line of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UnreadableFile(
            path, f"line {line}: the file is not UTF-8 text (byte {exc.start}: {exc.reason})"
        ) from None
