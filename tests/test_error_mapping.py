"""One error vocabulary: every typed error has its own answer, chosen by its class,
in both APIs; the names the store refuses are a 4xx on every route, never a 500."""

from __future__ import annotations

import errno

import pytest

from service.errors import TABLE, answer
from tests.server import serve_copy
from training import errors as engine

TOKEN = "map-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_copy(tmp_path_factory.mktemp("map"), train_token=TOKEN, snapshot_every=0)


@pytest.mark.parametrize(
    "err,status,code,retry",
    [
        (errno.ENOSPC, 507, "storage_full", True),
        (errno.EDQUOT, 507, "storage_full", True),
        (errno.EROFS, 503, "read_only", True),
        (errno.EIO, 503, "storage_error", True),
    ],
)
def test_storage_errors_by_errno(err, status, code, retry):
    exc = engine.storage_error(OSError(err, "x"), "/store/digits/journal.log", "write")
    a = answer(exc)
    assert (a.status, a.code) == (status, code)
    assert ("Retry-After" in a.headers) == retry
    assert "/store" not in a.message and "digits/journal.log" in a.message


def test_every_class_in_the_table_answers_by_its_class_not_its_message():
    for cls, (status, code) in TABLE.items():
        if issubclass(cls, engine.StorageError):
            exc = cls("p", "fsync", errno.EIO)
        elif issubclass(cls, engine.StoreError):
            exc = cls("p", "invalid manifest, no such version, invalid")  # misleading words
        else:
            exc = cls("no such version; invalid")
        a = answer(exc)
        assert (a.status, a.code) == (status, code), cls
    assert answer(RuntimeError("storage_full")) is None  # unknown: a 500, logged


@pytest.mark.parametrize("name", ["..", "a..b", ".hidden", "x" * 80, "bad%20name", "%C3%BC"])
def test_load_with_a_name_the_store_refuses_is_a_4xx(server, name):
    status, reply = server.request("POST", f"/models/{name}/load", {"version": 1}, token=TOKEN)
    assert 400 <= status < 500, (status, reply)
    assert reply["error"]["code"] in ("invalid_name", "unknown_model", "not_found")


@pytest.mark.parametrize(
    "method,path,body,status,code",
    [
        ("POST", "/models/digits/load", {"version": 99}, 404, "unknown_version"),
        ("POST", "/models/nope/load", {"version": 1}, 404, "unknown_model"),
        ("POST", "/models/nope/snapshot", None, 404, "unknown_model"),
        (
            "POST",
            "/models/digits/versions/7/predict",
            {"inputs": [[0] * 64]},
            404,
            "unknown_version",
        ),
    ],
)
def test_registry_errors_have_their_codes(server, method, path, body, status, code):
    got, reply = server.request(method, path, body, token=TOKEN)
    assert (got, reply["error"]["code"]) == (status, code), reply


def test_v2_keeps_its_body_shape_for_the_same_errors(server):
    got, reply = server.request("GET", "/v2/models/digits/versions/9")
    assert got == 404 and isinstance(reply["error"], str) and "no such version" in reply["error"]
    got, reply = server.request("GET", "/v2/models/nope")
    assert got == 404 and isinstance(reply["error"], str)
