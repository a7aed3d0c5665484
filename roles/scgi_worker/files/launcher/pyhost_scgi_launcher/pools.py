"""The pools that serve requests, and the serving lifecycle they share.

flup's PreforkServer and ThreadedServer main loops, rewritten where they were
broken:

* the prefork parent ignored SIGTERM while idle (``select()`` is retried after
  a signal since PEP 475), so systemd had to SIGKILL it: signals now wake the
  loop through a wakeup socket and shutdown is bounded by --drain-timeout;
* the prefork pool never grew past ``maxSpare`` (child states, bytes, were
  compared with the str ``'\\x00'``) and the SIGUSR1 purge sent a str;
* a forked child left with ``sys.exit()``, unwinding through the parent's
  frames and running the parent's cleanup;
* each prefork request cost two writes to the parent and woke it twice (now:
  a scoreboard in shared memory);
* flup's thread pool counted a thread idle until it had picked up its job;
* which TCP peers may connect differed by protocol and method (SCGI threaded:
  127.0.0.1 only, SCGI prefork: anyone, FastCGI: an environment variable):
  every pool now admits the --allow-peer addresses only.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import mmap
import os
import select
import signal
import socket
import sys
import threading
import time
from typing import Any, Callable, Collection, Union

from pyhost_scgi_launcher.environ import fix_environ
from pyhost_scgi_launcher.systemd import SystemdNotifier

# At a stop, requests in flight get this long to finish (--drain-timeout);
# those still running are then cut off. The ones that have not been accepted
# stay in the listening socket's backlog: behind systemd, the next process
# serves them.
DEFAULT_DRAIN_TIMEOUT = 30

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

# The TCP peers admitted when --allow-peer is not given: this host's loopback.
LOOPBACK_PEERS: tuple[IPAddress, ...] = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))

# Idle prefork processes kept ready; the pool grows to --max-children on demand
# and, idle, shrinks back by one process every PREFORK_SHRINK_INTERVAL seconds.
PREFORK_MIN_SPARE = 1
PREFORK_MAX_SPARE = 2
PREFORK_SHRINK_INTERVAL = 1.0

# The states of a prefork scoreboard slot.
EMPTY, IDLE, BUSY = 0, 1, 2


class PoolServer:
    """Shared by all protocols and methods: construction, environ fix-up,
    serving lifecycle. A server (see servers.py) names the flup connection
    class it serves each connection with."""

    connection_class: type

    _wakeup_r: socket.socket
    _wakeup_w: socket.socket

    def __init__(
        self,
        application: Callable[..., Any],
        *,
        mount: str,
        log_level: str,
        max_children: int,
        max_requests: int,
        read_timeout: float = 0,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        allowed_peers: Collection[IPAddress] = LOOPBACK_PEERS,
    ) -> None:
        self._max_children = max_children
        self._drain_timeout = drain_timeout
        self._allowed_peers = frozenset(allowed_peers)
        # debug stays off: flup's debug page imports cgitb, removed in Python 3.13.
        super().__init__(
            application,
            debug=False,  # type: ignore[call-arg]
            **self.pool_options(max_children, max_requests),
        )
        # flup logs every request at INFO through a handler of its own; use
        # ours (no duplicate lines) at the operator's level.
        self.logger.handlers.clear()  # type: ignore[attr-defined]
        self.logger.setLevel(log_level)  # type: ignore[attr-defined]
        # flup decodes headers as latin-1, the PEP 3333 "bytes as str" form;
        # the mount is compared in that form too.
        self._mount = mount.encode("utf-8").decode("latin-1")
        self._stop_requested = False
        self.timed_out = False
        # Read by the connections (deadline.ReadDeadline).
        self.read_timeout = read_timeout
        # flup's servers set the connection class they were written with.
        self._jobClass = self.connection_class

    def _isClientAllowed(self, addr: Any) -> bool:
        """flup's hook, called by both pools on each accepted connection: a
        refused one is closed before a byte is read or written. A Unix
        socket's peers are checked by the socket file's mode."""
        if not isinstance(addr, tuple):
            return True
        peer = ipaddress.ip_address(addr[0].partition("%")[0])
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped:
            peer = peer.ipv4_mapped
        if peer in self._allowed_peers:
            return True
        self.logger.warning("refused a connection from %s: not an --allow-peer address", peer)  # type: ignore[attr-defined]
        return False

    def _sanitizeEnv(self, environ: dict[str, Any]) -> None:
        fix_environ(environ, self._request_path(environ), self._mount)

    def _request_path(self, environ: dict[str, Any]) -> str:
        """The whole decoded request path: mod_proxy_scgi and mod_proxy_fcgi
        send it as SCRIPT_NAME (AJP overrides this)."""
        return environ.get("SCRIPT_NAME", "")

    def serve(
        self,
        sock: socket.socket,
        notifier: SystemdNotifier,
        status: str,
        seconds: float | None = None,
    ) -> None:
        """Serve until a stop signal, or for `seconds` (then `timed_out` is set
        and systemd is not told the service is stopping)."""
        # The socket must not block: several processes may wake up for one connection.
        sock.setblocking(False)
        self._installSignalHandlers()
        try:
            if seconds is not None:
                signal.signal(signal.SIGALRM, self._time_is_up)
                signal.setitimer(signal.ITIMER_REAL, seconds)
            notifier.notify(f"READY=1\nSTATUS={status}")
            self._accept_loop(sock)
            if not self.timed_out:
                notifier.notify("STOPPING=1")
            self._drain()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._restoreSignalHandlers()

    # Named like flup's methods, which they replace.
    def _installSignalHandlers(self) -> None:
        # Handlers only set flags; the wakeup socket makes select() return at
        # once instead of being silently restarted (PEP 475).
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._wakeup_r.setblocking(False)
        self._wakeup_w.setblocking(False)
        signal.set_wakeup_fd(self._wakeup_w.fileno())
        handlers = self._signal_handlers()
        self._oldSIGs = [(signum, signal.getsignal(signum)) for signum in handlers]
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

    def _restoreSignalHandlers(self) -> None:
        for signum, handler in self._oldSIGs:
            signal.signal(signum, handler)
        signal.set_wakeup_fd(-1)
        self._wakeup_r.close()
        self._wakeup_w.close()

    def _signal_handlers(self) -> dict[int, Callable[[int, Any], None]]:
        return {
            signal.SIGTERM: self._request_stop,
            signal.SIGINT: self._request_stop,
            signal.SIGHUP: self._request_stop,
        }

    def _request_stop(self, signum: int, frame: Any) -> None:
        self._stop_requested = True

    def _time_is_up(self, signum: int, frame: Any) -> None:
        self.timed_out = not self._stop_requested
        self._stop_requested = True

    def _wait(
        self, sockets: list[socket.socket], timeout: float | None = None
    ) -> list[socket.socket]:
        """select() on sockets plus the wakeup socket; returns the readable sockets."""
        readable, _writable, _exceptional = select.select([self._wakeup_r, *sockets], [], [], timeout)
        if self._wakeup_r in readable:
            with contextlib.suppress(BlockingIOError):
                while self._wakeup_r.recv(512):
                    pass
        return [sock for sock in readable if sock is not self._wakeup_r]

    @staticmethod
    def pool_options(max_children: int, max_requests: int) -> dict[str, int]:
        raise NotImplementedError

    def _accept_loop(self, sock: socket.socket) -> None:
        raise NotImplementedError

    def _drain(self) -> None:
        raise NotImplementedError


class PreforkPool(PoolServer):
    """flup's PreforkServer main loop, rewritten where it was broken and where
    it cost time on every request.

    The parent only manages children; they accept connections themselves. In
    flup, a child told the parent by a socket write that it took a request and
    another that it was free again: two system calls and two wake-ups of the
    parent per request. Here each child marks its slot of a scoreboard, memory
    shared with the parent, and writes to the parent only when the pool must
    grow. The parent retires one idle process beyond the spares a second.
    """

    _children: dict[int, dict[str, Any]]
    _minSpare: int
    _maxSpare: int
    _maxChildren: int
    _maxRequests: int
    _recycle_requested = False

    @staticmethod
    def pool_options(max_children: int, max_requests: int) -> dict[str, int]:
        return {
            "minSpare": PREFORK_MIN_SPARE,
            "maxSpare": min(PREFORK_MAX_SPARE, max_children),
            "maxChildren": max_children,
            "maxRequests": max_requests,
        }

    def _signal_handlers(self) -> dict[int, Callable[[int, Any], None]]:
        return {
            **super()._signal_handlers(),
            signal.SIGCHLD: self._on_child_exit,
            signal.SIGUSR1: self._request_recycle,
        }

    def _on_child_exit(self, signum: int, frame: Any) -> None:
        """Nothing to do here: the wakeup socket gets the main loop to reap."""

    def _request_recycle(self, signum: int, frame: Any) -> None:
        self._recycle_requested = True

    @staticmethod
    def share_with_children() -> None:
        """Keep the imported app's memory shared with the children forked from here.

        A page that a child only reads stays the parent's; but the cycle
        collector writes to every object it scans (its header), and a child
        that scans the app's objects copies their pages. Frozen, they are
        never scanned again."""
        gc.collect()
        gc.freeze()

    def _accept_loop(self, sock: socket.socket) -> None:
        # One byte per process slot (EMPTY, IDLE, BUSY): an anonymous mapping is shared across fork().
        self._board = mmap.mmap(-1, self._maxChildren)
        self._last_shrink = time.monotonic()
        self.share_with_children()
        while not self._stop_requested:
            self._balance(sock)
            for channel in self._wait(self._channels(), PREFORK_SHRINK_INTERVAL):
                self._read_notices(channel)
            self._reapChildren()

    def _channels(self) -> list[socket.socket]:
        return [child["file"] for child in self._children.values() if child["file"] is not None]

    def _read_notices(self, channel: socket.socket) -> None:
        """A child asked for more processes (the next _balance() sees why), or has exited."""
        try:
            if channel.recv(64):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._retire(next(pid for pid, child in self._children.items() if child["file"] is channel))

    def _retire(self, pid: int) -> None:
        """Close the channel to a child: an idle child exits at once, a busy
        one after its current request."""
        child = self._children[pid]
        if child["file"] is not None:
            child["file"].close()
            child["file"] = None

    def _balance(self, sock: socket.socket) -> None:
        if self._recycle_requested:
            self._recycle_requested = False
            for pid in list(self._children):
                self._retire(pid)
        idle = sorted(
            pid
            for pid, child in self._children.items()
            if child["file"] is not None and self._board[child["slot"]] == IDLE
        )
        now = time.monotonic()
        if len(idle) > self._maxSpare and now - self._last_shrink >= PREFORK_SHRINK_INTERVAL:
            self._retire(idle.pop())
            self._last_shrink = now
        if len(idle) < self._minSpare:
            for _new_child in range(self._maxSpare - len(idle)):
                if not self._spawn(sock):
                    break

    def _spawn(self, sock: socket.socket) -> bool:
        """Start a child in a free slot; False if there is none or fork() failed."""
        slot = self._board.find(bytes([EMPTY]))
        if slot < 0:
            return False
        to_child, to_parent = socket.socketpair()
        self._board[slot] = IDLE
        try:
            pid = os.fork()
        except OSError as error:
            to_child.close()
            to_parent.close()
            self._board[slot] = EMPTY
            self.logger.error("cannot start a worker process: %s", error)  # type: ignore[attr-defined]
            return False
        if pid == 0:
            to_child.close()
            self._child(sock, to_parent, slot)
        to_parent.close()
        to_child.setblocking(False)
        self._children[pid] = {"file": to_child, "slot": slot}
        return True

    def _reapChildren(self) -> None:
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            child = self._children.pop(pid, None)
            if child is not None:
                if child["file"] is not None:
                    child["file"].close()
                self._board[child["slot"]] = EMPTY

    def _drain(self) -> None:
        for pid in list(self._children):
            self._retire(pid)
        deadline = time.monotonic() + self._drain_timeout
        while self._children and (remaining := deadline - time.monotonic()) > 0:
            self._wait([], remaining)
            self._reapChildren()
        for pid in list(self._children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self._children.clear()

    def _child(self, sock: socket.socket, parent: socket.socket, slot: int) -> None:
        """A forked child's whole life; it never returns. It leaves with
        os._exit(): an exception or sys.exit() would unwind through the
        parent's frames copied by fork() and run the parent's cleanup
        (unlink the socket, tell systemd STOPPING)."""
        status = 0
        try:
            os.setpgid(0, 0)
            self._restoreSignalHandlers()
            # The channels to its siblings: kept open here, a sibling's would never see the parent close it.
            for channel in self._channels():
                channel.close()
            self._children = {}
            self._serve_requests(sock, parent, slot)
        except KeyboardInterrupt:
            pass
        except BaseException:
            self.logger.exception("worker process %d failed", os.getpid())  # type: ignore[attr-defined]
            status = 1
        sys.stderr.flush()
        os._exit(status)

    def _serve_requests(self, sock: socket.socket, parent: socket.socket, slot: int) -> None:
        """Until the parent closes the channel (or dies), or --max-requests."""
        parent.setblocking(False)
        served = 0
        while True:
            # Every idle process wakes for a connection, and the first to run takes it. Waking only one
            # (EPOLLEXCLUSIVE) measured a worse p99 at 32 connections on two cores: the one woken may wait
            # for a core while the others sleep.
            readable, _writable, _exceptional = select.select([parent, sock], [], [])
            if parent in readable:
                return
            try:
                conn, addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                continue  # another process took it
            if not self._isClientAllowed(addr):
                conn.close()
                continue
            self._board[slot] = BUSY
            if self._pool_must_grow():
                with contextlib.suppress(OSError):  # full: the parent has notices to read already
                    parent.send(b"+")
            self._jobClass(conn, addr, *self._jobArgs).run()
            served += 1
            if self._maxRequests and served >= self._maxRequests:
                return
            self._board[slot] = IDLE

    def _pool_must_grow(self) -> bool:
        states = self._board[:]
        return states.count(IDLE) < self._minSpare and EMPTY in states


class TrackedJob:
    """A flup connection job that reports when it is done."""

    def __init__(self, job: Any, done: Callable[[], None]) -> None:
        self._job = job
        self._done = done

    def run(self) -> None:
        try:
            self._job.run()
        finally:
            self._done()


class ThreadedPool(PoolServer):
    """flup's ThreadedServer main loop with a fixed pool of --max-children threads.

    flup's pool counts a thread idle until it has picked up its job, so a burst
    of connections could queue behind busy threads. Here the pool has all its
    threads from the start and the loop accepts only while one is free; the
    others wait in the kernel's backlog, as with prefork.
    """

    _threadPool: Any
    _jobArgs: tuple[Any, ...]

    @staticmethod
    def pool_options(max_children: int, max_requests: int) -> dict[str, int]:
        return {
            "minSpare": max_children,
            "maxSpare": max_children,
            "maxThreads": max_children,
        }

    def _accept_loop(self, sock: socket.socket) -> None:
        self._busy = 0
        self._idle = threading.Condition()
        while not self._stop_requested:
            if self._wait([sock] if self._busy < self._max_children else []):
                self._accept(sock)

    def _accept(self, sock: socket.socket) -> None:
        try:
            conn, addr = sock.accept()
        except (BlockingIOError, InterruptedError):
            return  # another process sharing the socket took it
        if not self._isClientAllowed(addr):  # type: ignore[attr-defined]
            conn.close()
            return
        with self._idle:
            self._busy += 1
        self._threadPool.addJob(
            TrackedJob(self._jobClass(conn, addr, *self._jobArgs), self._job_done)
        )

    def _job_done(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()
        with contextlib.suppress(
            OSError
        ):  # full (the loop will wake anyway) or closed at exit
            self._wakeup_w.send(b"\0")

    def _drain(self) -> None:
        # Threads still busy after the drain timeout are daemon threads: they end with the process.
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0, timeout=self._drain_timeout)
