"""gunicorn's gthread worker, with kept-alive connections spread evenly over the workers.

Why: with two workers, keep-alive connections stay on whichever worker accepted them;
a client with a few persistent connections (a load balancer's pool, wrk) often had
them all on one worker and got one worker's speed (BENCHMARKS.md, Serving side by side).
Two things keep them spread:

- Closing a connection after ``BPSERVE_KEEPALIVE_REQUESTS`` requests or
  ``BPSERVE_KEEPALIVE_SECONDS`` seconds, with ``Connection: close`` on its last reply
  (what nginx's ``keepalive_requests`` and ``keepalive_time`` do), makes the client
  reconnect.  The request itself is answered in full first.
- A ledger in memory shared by the workers (one slot each: open connections and when
  that was last written) lets a worker accept only while it holds no more connections
  than the least loaded live worker.  Which worker wins an accept is otherwise a race
  that a busy worker wins as often as an idle one, so reconnects could land on the
  worker that already had most connections.  The least loaded worker always accepts,
  so a connection is never left waiting for everyone; a slot not written for
  ``STALE_S`` (a worker killed, or one that has not started) does not count.
"""

from __future__ import annotations

import email.utils
import select
import threading
import time
from multiprocessing.sharedctypes import RawArray

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from service.settings import Settings

SLOTS = 64  # at most this many workers take part in the ledger; the rest accept freely
STALE_S = 2.0
LINGER_MS = 2  # how long a thread waits on its connection for the next request
# Made in the master at import, before any fork: every worker shares the same pages.
_COUNTS = RawArray("l", SLOTS)
_STAMPS = RawArray("d", SLOTS)


_date = (0, "")


def http_date(timestamp: float | None = None) -> str:
    """gunicorn's ``util.http_date`` (what the Date header says), made once a second."""
    global _date
    if timestamp is not None:
        return email.utils.formatdate(timestamp, usegmt=True)
    now = int(time.time())
    second, text = _date
    if second != now:
        text = email.utils.formatdate(now, usegmt=True)
        _date = (now, text)
    return text


def assign_slot(server, worker) -> None:
    """gunicorn's pre_fork hook (in the master): the lowest slot no live worker holds."""
    taken = {getattr(w, "bpserve_slot", None) for w in server.WORKERS.values()}
    free = [i for i in range(SLOTS) if i not in taken]
    worker.bpserve_slot = free[0] if free else None
    if free:
        _STAMPS[free[0]] = 0.0  # whatever a dead worker left there no longer counts


class RecyclingThreadWorker(ThreadWorker):
    def __init__(self, *args, **kwargs) -> None:
        self.bpserve_slot: int | None = None  # the master's pre_fork hook sets it
        super().__init__(*args, **kwargs)
        s = Settings()
        self.keepalive_requests = s.keepalive_requests
        self.keepalive_seconds = s.keepalive_seconds
        # Slots go lowest free first, so live workers sit in the first 2 x workers (old
        # and new side by side during a reload); asked once a turn of the loop, so short.
        self._slots = range(min(SLOTS, 2 * self.cfg.workers))
        self._lingering = 0  # threads waiting on their connection (_next_request_soon)
        self._queued = 0  # connections handed to the pool and not yet taken by a thread
        self._linger_lock = threading.Lock()

    @property
    def worker_connections(self) -> int:
        """gthread accepts while ``nr_conns < worker_connections`` (asked once a turn of
        its loop): here that also means no live worker holds fewer connections."""
        if self.bpserve_slot is None or not self.alive:
            return self._connection_limit
        now = time.monotonic()
        others = [
            _COUNTS[i] for i in self._slots if i != self.bpserve_slot and now - _STAMPS[i] < STALE_S
        ]
        if others and self.nr_conns > min(others):
            return self.nr_conns  # not now
        return self._connection_limit

    @worker_connections.setter
    def worker_connections(self, limit: int) -> None:
        self._connection_limit = limit

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        # Once a turn of gthread's loop, right after it asked worker_connections: publish
        # this worker's count, and while not accepting look again soon, since another
        # worker's count may drop without anything happening here.
        if self.bpserve_slot is not None:
            _COUNTS[self.bpserve_slot] = self.nr_conns
            _STAMPS[self.bpserve_slot] = time.monotonic()
            timeout = min(timeout, 0.5 if self._accepting else 0.05)
        super().wait_for_and_dispatch_events(timeout)

    def run(self) -> None:
        util.http_date = http_date
        try:
            super().run()
        finally:
            if self.bpserve_slot is not None:
                _STAMPS[self.bpserve_slot] = 0.0

    def handle_request(self, req, conn):
        served = getattr(conn, "bpserve_served", 0) + 1
        conn.bpserve_served = served
        if served == 1:
            conn.bpserve_since = time.monotonic()
        if (self.keepalive_requests and served >= self.keepalive_requests) or (
            self.keepalive_seconds
            and time.monotonic() - conn.bpserve_since >= self.keepalive_seconds
        ):
            req.must_close = True  # gunicorn then replies "Connection: close" and closes
        return super().handle_request(req, conn)

    def enqueue_req(self, conn) -> None:
        with self._linger_lock:
            self._queued += 1
        super().enqueue_req(conn)

    def handle(self, conn):
        """One request, then, while the client sends its next one within ``LINGER_MS``,
        the next ones on the same thread.

        Why: gthread hands every kept-alive connection back to its main thread between
        requests (a pipe write, two epoll changes, a poll and a queue hand-over back to
        a pool thread); a client that sends its next request at once, as a load balancer's
        pooled connection under load does, pays that on every request.  A thread lingers
        only while no connection is queued for a thread and at least one other thread
        stays free, so a waiting connection never waits for a lingering one.
        """
        with self._linger_lock:
            self._queued -= 1
        keep = super().handle(conn)
        while keep is True and self.alive and self._next_request_soon(conn):
            keep = super().handle(conn)
        return keep

    def _next_request_soon(self, conn) -> bool:
        buffered = bool(conn.parser.unreader.buf.getvalue())  # read with the last request
        with self._linger_lock:
            if self._queued:
                return False  # gthread re-queues this one behind the waiting ones
            if buffered:
                return True
            if self._lingering >= self.cfg.threads - 1:
                return False
            self._lingering += 1
        try:
            waiter = getattr(conn, "bpserve_poll", None)
            if waiter is None:
                waiter = conn.bpserve_poll = select.poll()
                waiter.register(conn.sock, select.POLLIN)
            return bool(waiter.poll(LINGER_MS))
        finally:
            with self._linger_lock:
                self._lingering -= 1
