"""gunicorn's gthread worker, closing each kept-alive connection after a while.

Why: with two workers, keep-alive connections stay on whichever worker accepted them;
a client with a few persistent connections (a load balancer's pool, wrk) often had
them all on one worker and got one worker's speed (BENCHMARKS.md, Serving side by side).
Closing a connection after ``BPSERVE_KEEPALIVE_REQUESTS`` requests or
``BPSERVE_KEEPALIVE_SECONDS`` seconds, with ``Connection: close`` on its last reply
(what nginx's ``keepalive_requests`` and ``keepalive_time`` do), makes the client
reconnect; the new connection goes to a worker that is free to accept it, so the
connections keep spreading out.  The request itself is answered in full first.
"""

from __future__ import annotations

import time

from gunicorn.workers.gthread import ThreadWorker

from service.settings import Settings


class RecyclingThreadWorker(ThreadWorker):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        s = Settings()
        self.keepalive_requests = s.keepalive_requests
        self.keepalive_seconds = s.keepalive_seconds

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
