"""`pvetool.textfile`: only regular files, only up to a limit, never a blocking open."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from pvetool.textfile import UnreadableFile, decode_utf8, read_limited


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_bytes(b"version: 1\n")
    assert read_limited(path, 100) == b"version: 1\n"
    assert read_limited(path, 11) == b"version: 1\n"  # exactly at the limit


def test_a_file_over_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"x" * 2049)
    with pytest.raises(UnreadableFile) as info:
        read_limited(path, 2048)
    assert info.value.reason == "is 2049 bytes; files larger than 2 KiB are refused"


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(UnreadableFile) as info:
        read_limited(fifo, 1024)
    assert info.value.reason == "is a FIFO (named pipe), not a regular file"
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/dev/zero", "a character device"), ("/dev/urandom", "a character device")],
)
def test_devices_are_refused(path: str, kind: str) -> None:
    if not Path(path).exists():
        pytest.skip(f"no {path}")
    with pytest.raises(UnreadableFile) as info:
        read_limited(path, 1024)
    assert info.value.reason == f"is {kind}, not a regular file"


def test_a_directory_a_socket_and_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFile, match="is a directory, not a regular file"):
        read_limited(tmp_path, 1024)
    with pytest.raises(UnreadableFile, match="does not exist"):
        read_limited(tmp_path / "nope", 1024)
    sock_path = tmp_path / "s"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    try:
        with pytest.raises(UnreadableFile, match="not a regular file|cannot be read"):
            read_limited(sock_path, 1024)
    finally:
        server.close()


def test_an_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file the kernel refuses to open (permissions) is named with the system's reason.

    The refusal is the kernel's answer to open(2); it is simulated so the test also holds when
    the suite runs as root, who can read a file of mode 000.
    """
    path = tmp_path / "secret"
    path.write_text("x")
    real_open = os.open

    def refuse(name: str, flags: int, *args: int) -> int:
        if name == str(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), name)
        return real_open(name, flags, *args)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(UnreadableFile, match=r"cannot be read \(Permission denied\)"):
        read_limited(path, 1024)


def test_a_file_that_grows_while_it_is_read(tmp_path: Path) -> None:
    """The size is checked while reading too: a file that grows past the limit is refused."""
    path = tmp_path / "growing"
    path.write_bytes(b"x" * 100)
    stop = threading.Event()

    def grow() -> None:
        with path.open("ab") as handle:
            while not stop.is_set():
                handle.write(b"y" * 65536)
                handle.flush()

    writer = threading.Thread(target=grow)
    writer.start()
    try:
        time.sleep(0.05)
        with pytest.raises(UnreadableFile, match="larger than"):
            read_limited(path, 4096)
    finally:
        stop.set()
        writer.join()


def test_text_that_is_not_utf8_names_its_line() -> None:
    assert decode_utf8("ok\u00e9".encode(), "f") == "ok\u00e9"
    with pytest.raises(UnreadableFile) as info:
        decode_utf8(b"a\nb\n\xff\n", "plan.json")
    assert info.value.reason.startswith("line 3: the file is not UTF-8 text (byte 4")
    assert str(info.value).startswith("plan.json: line 3")
