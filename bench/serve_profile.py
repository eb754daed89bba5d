"""Where a /predict request's time goes, piece by piece (the figures behind BENCHMARKS.md).

1. In process: each step of the 1-row handler, timed with timeit.
2. The 1,000-row forward pass in a fresh process, with glibc's default thresholds and
   after service.malloc.keep_freed_memory() (what each worker does after fork).
3. A bare Flask app under the same gunicorn settings: GET against POST with the same
   1-row body, to see what a body alone costs the stack.
4. bpserve's own /healthz and /predict under gunicorn with 1, 2 and 4 threads.
5. The same bare app with /predict's steps added one at a time (read, parse, array,
   forward, reply), 1 thread: what each step costs in a live worker; the reply with
   labels by numpy's argmax and picked in Python; and reading the body plus one stat
   of a journal file, what each request did before the journal's change counter.
6. That app's whole route (a plain Flask + pydantic + numpy /predict) against a trivial
   GET of the same app, with bpserve's benchmark settings: the yardstick the issue's
   0.85 goal was set by.
7. A bare route that only takes a 1,000-row V2 binary body and answers with as many
   bytes, beside bpserve's V2 binary infer and JSON /predict: what bounds the 5x goal.

    .venv/bin/python bench/serve_profile.py
    .venv/bin/python bench/serve_profile.py --parts 6 --rounds 5    # part 6 alone

The parts live in bench/profile_inprocess.py (1, 2), bench/profile_live.py (3, 4, 5) and
bench/profile_yardsticks.py (6, 7); the apps they start in bench/profile_apps.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from profile_inprocess import forward_malloc, handler_pieces, interleaved
from profile_live import bare_flask, steps, threads
from profile_yardsticks import plain, transport
from serve_bench import ensure_wrk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="per wrk case (and round)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of parts 6 and 7")
    parser.add_argument("--parts", default="1,2,3,4,5,6,7", help="which parts, e.g. 2 or 6,7")
    args = parser.parse_args()
    parts = {int(p) for p in args.parts.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if 1 in parts:
            print(json.dumps(handler_pieces()), flush=True)
            print(json.dumps(interleaved()), flush=True)
        if 2 in parts:
            print(json.dumps(forward_malloc()), flush=True)
        wrk = ensure_wrk() if parts & {3, 4, 5, 6, 7} else ""
        if 3 in parts:
            print(json.dumps(bare_flask(wrk, tmp, args.seconds)), flush=True)
        if 4 in parts:
            for row in threads(wrk, tmp, args.seconds):
                print(json.dumps(row), flush=True)
        if 5 in parts:
            print(json.dumps(steps(wrk, tmp, args.seconds)), flush=True)
        if 6 in parts:
            print(json.dumps(plain(wrk, tmp, args.seconds, args.rounds)), flush=True)
        if 7 in parts:
            print(json.dumps(transport(wrk, tmp, args.seconds, args.rounds)), flush=True)


if __name__ == "__main__":
    main()
