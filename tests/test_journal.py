import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.journal import FileJournal, Record, encode

ROOT = Path(__file__).resolve().parent.parent


def step(i: int) -> Record:
    rng = np.random.default_rng(i)
    return Record(
        "step",
        {"segment": "s1", "step": i, "learning_rate": 0.01, "momentum": 0.9},
        rng.normal(size=(4, 3)).astype(np.float32),
        np.eye(3, dtype=np.float32)[[0, 1, 2, 0]],
    )


@pytest.fixture
def journal(tmp_path):
    return FileJournal(tmp_path)


def test_append_and_read_back_bit_identical(journal):
    with journal.locked():
        journal.rebase(Record("base", {"version": 1, "pinned": False, "segment": "s1"}))
        for i in range(3):
            end = journal.append(step(i))
    records, pos = journal.read(None)
    assert pos == end == journal.position()
    assert [r.kind for _, r in records] == ["base", "step", "step", "step"]
    for i, (_, r) in enumerate(records[1:]):
        assert r.meta["step"] == i
        assert r.x.tobytes() == step(i).x.tobytes() and r.y.tobytes() == step(i).y.tobytes()
    # reading on from a position returns only what came after it
    more, _ = journal.read(records[2][0])
    assert [r.meta["step"] for _, r in more] == [2]


@pytest.mark.parametrize("damage", ["torn", "flipped", "garbage"])
def test_torn_or_corrupt_tail_is_detected_truncated_and_logged(journal, caplog, damage):
    with journal.locked():
        journal.rebase(Record("base", {"version": 1, "pinned": False, "segment": "s1"}))
        journal.append(step(0))
        good_end = journal.append(step(1))
    data = journal.path.read_bytes()
    if damage == "torn":  # a crash in the middle of an append
        journal.path.write_bytes(data + encode(step(2))[:-7])
    elif damage == "flipped":  # the last record's payload changed on disk
        journal.path.write_bytes(data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:])
        good_end = journal.read(None)[0][1][0]  # only the base and step 0 survive
    else:
        journal.path.write_bytes(data + b"\x00garbage")
    # a reader stops before the damage and changes nothing
    records, pos = journal.read(None)
    assert pos == good_end and records[-1][0] == good_end
    assert journal.path.stat().st_size > good_end.offset
    # the next writer (a restarted process: a fresh journal object) truncates the
    # tail, logging it, and keeps what came before
    journal = FileJournal(journal.path.parent)
    with caplog.at_level(logging.WARNING, logger="bpserve"), journal.locked():
        pass
    assert journal.path.stat().st_size == good_end.offset
    assert any(getattr(r, "event", None) == "journal_truncated" for r in caplog.records)
    with journal.locked():
        journal.append(step(5))
    assert [r.kind for _, r in journal.read(None)[0]][-1] == "step"


def test_rebase_compacts_and_readers_start_over(journal):
    with journal.locked():
        journal.rebase(Record("base", {"version": 1, "pinned": False, "segment": "s1"}))
        for i in range(4):
            journal.append(step(i))
    _, old = journal.read(None)
    with journal.locked():
        journal.rebase(Record("base", {"version": 2, "pinned": True, "segment": "s2"}))
    records, new = journal.read(old)  # a reader holding a position in the old file
    assert new.ident != old.ident
    assert [(r.kind, r.meta["version"]) for _, r in records] == [("base", 2)]
    assert journal.path.stat().st_size == new.offset


def test_every_change_moves_the_counter_other_processes_read(journal, tmp_path):
    reader = FileJournal(tmp_path)  # another worker's view: its own mapping of the file
    seen = [reader.changes()]
    with journal.locked():
        journal.rebase(Record("base", {"version": 1, "pinned": False, "segment": "s1"}))
        seen.append(reader.changes())
        journal.append(step(0))
        seen.append(reader.changes())
    journal.path.write_bytes(journal.path.read_bytes() + b"torn")
    with FileJournal(tmp_path).locked():  # a fresh writer repairs the tail
        pass
    seen.append(reader.changes())
    assert seen == [0, 1, 2, 3]
    # and from a separate process, through the shared file
    code = """
import sys
from pathlib import Path
from training.journal import FileJournal, Record
j = FileJournal(Path(sys.argv[1]))
with j.locked():
    j.rebase(Record("base", {"version": 2, "pinned": False, "segment": "s2"}))
"""
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=ROOT)
    assert reader.changes() == 4
    # nothing else moves it: reading and checking positions do not
    journal.read(None), reader.read(None), journal.position()
    assert reader.changes() == journal.changes() == 4
