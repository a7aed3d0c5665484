"""--read-timeout: a connection must deliver its whole request (headers and
body) within a deadline, or it is closed and its worker freed. A slow or
stalled client cannot hold a worker; the app's own time to answer is not
limited. The answer goes out under the same bound: a peer that takes no byte
of it for that long (a web server stuck behind a client that reads slowly, or
not at all) is dropped too."""

from __future__ import annotations

import contextlib
import errno
import io
import select
import socket
import time
from typing import Any

from pyhost_scgi_launcher import log

DEFAULT_READ_TIMEOUT = 60
# How long a finished connection waits for the web server to close its end.
CLOSE_DRAIN = 1.0


class RequestTooSlow(EOFError):
    """The connection did not deliver its request in time. An EOFError, so
    that flup closes the connection as it does when a peer goes away."""


class DeadlineSocket:
    """An accepted connection whose reads must all be done by a deadline, and
    whose every write must make progress within the same time.

    The app's own time to answer is not bounded: only what the peer does.
    flup reads with recv() and through makefile(), and writes with send(),
    sendall() and through makefile(); all come here. Everything else goes to
    the socket itself.

    With read_ahead, a small read takes up to that many bytes at once and
    serves the next reads from them: flup reads an SCGI request's length one
    byte per recv(). Only for a protocol whose reader never waits on the
    socket itself (select() would not see the bytes read ahead)."""

    def __init__(self, sock: socket.socket, seconds: float, read_ahead: int = 0) -> None:
        self._sock = sock
        self._seconds = seconds
        self._deadline = time.monotonic() + seconds if seconds else float("inf")
        self._io_refs = 0
        self._warned = False
        self._warned_write = False
        self._read_ahead = read_ahead
        self._ahead = b""
        # The socket's timeout as last set: setting it costs two fcntl() calls, and each write sets None.
        self._timeout = sock.gettimeout()

    def _too_slow(self) -> RequestTooSlow:
        if not self._warned:
            self._warned = True
            log.warning("closed a connection whose request did not arrive within %g s", self._seconds)
        return RequestTooSlow(f"the request did not arrive within {self._seconds:g} s")

    def _left(self) -> float | None:
        """Seconds left to read (None: no limit); raise when none are."""
        if self._deadline == float("inf"):
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise self._too_slow()
        return left

    def _before_read(self) -> None:
        self.settimeout(self._left())

    def settimeout(self, value: float | None) -> None:
        if value != self._timeout:
            self._sock.settimeout(value)
            self._timeout = value

    def setblocking(self, flag: bool) -> None:
        self.settimeout(None if flag else 0.0)

    def wait_readable(self) -> None:
        """Wait until there is something to read, at most until the deadline."""
        if self._ahead:
            return
        try:
            readable, _writable, _exceptional = select.select([self._sock], [], [], self._left())
        except ValueError:  # a closed socket
            raise EOFError from None
        if not readable:
            raise self._too_slow()

    def close_gently(self) -> None:
        """Stop sending and let the peer read all of it before closing, but
        wait at most CLOSE_DRAIN for the peer to close its end."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_WR)
            self.settimeout(CLOSE_DRAIN)
            while self._sock.recv(65536):
                pass
        self._sock.close()

    def recv(self, size: int, flags: int = 0) -> bytes:
        if self._ahead and not flags:
            data, self._ahead = self._ahead[:size], self._ahead[size:]
            return data
        self._before_read()
        try:
            if self._read_ahead > size and not flags:
                data = self._sock.recv(self._read_ahead)
                data, self._ahead = data[:size], data[size:]
                return data
            return self._sock.recv(size, flags)
        except TimeoutError:
            raise self._too_slow() from None

    def recv_into(self, buffer: Any, size: int = 0, flags: int = 0) -> int:
        if self._ahead and not flags:
            view = memoryview(buffer).cast("B")
            count = min(len(self._ahead), size or len(view), len(view))
            view[:count], self._ahead = self._ahead[:count], self._ahead[count:]
            return count
        self._before_read()
        try:
            return self._sock.recv_into(buffer, size, flags)
        except TimeoutError:
            raise self._too_slow() from None

    def _not_taken(self) -> BrokenPipeError:
        """EPIPE: flup ends the request quietly, as when the peer has gone."""
        if not self._warned_write:
            self._warned_write = True
            log.warning("closed a connection that took none of the answer for %g s", self._seconds)
        return BrokenPipeError(errno.EPIPE, f"the answer was not taken for {self._seconds:g} s")

    def send(self, data: Any, flags: int = 0) -> int:
        self.settimeout(self._seconds or None)
        try:
            return self._sock.send(data, flags)
        except TimeoutError:
            raise self._not_taken() from None

    def sendall(self, data: Any, flags: int = 0) -> None:
        # A deadline per send(), not for the whole answer (which socket.sendall's timeout would be): a large answer
        # to a slow but steady reader is not cut.
        view = memoryview(data).cast("B")
        while view:
            view = view[self.send(view, flags):]

    def makefile(self, mode: str = "r", buffering: int | None = None) -> Any:
        # As socket.makefile() does, over this object's recv_into and send.
        raw = socket.SocketIO(self, mode.replace("b", ""))  # type: ignore[arg-type]
        self._io_refs += 1
        if buffering == 0:
            return raw
        size = io.DEFAULT_BUFFER_SIZE if buffering in (None, -1) else buffering
        return io.BufferedReader(raw, size) if "r" in mode else io.BufferedWriter(raw, size)

    def _decref_socketios(self) -> None:
        self._io_refs -= 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class ReadDeadline:
    """A flup connection that gives its peer the server's read_timeout
    (--read-timeout) seconds to send the request (and reads ahead
    read_ahead bytes, see DeadlineSocket)."""

    read_ahead = 0

    def __init__(self, sock: socket.socket, addr: Any, server: Any, timeout: Any) -> None:
        super().__init__(  # type: ignore[call-arg]
            DeadlineSocket(sock, server.read_timeout, self.read_ahead), addr, server, timeout
        )

    def run(self) -> None:
        # flup ends a connection quietly on EOFError where it reads; this is
        # for where it does not catch it.
        with contextlib.suppress(RequestTooSlow):
            super().run()  # type: ignore[misc]
