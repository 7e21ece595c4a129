"""Hostile JSON nesting (issue 15 item 7): a body or filter nested 200,000 deep is a 400
with Go's ``exceeded max depth``, never a 500 (Python's parser raised RecursionError)."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from conch.api import (routes_archive, routes_build, routes_containers, routes_exec,
                       routes_networks, routes_volumes)
from conch.api.body import parse_json
from conch.api.server import ROUTE_MODULES, create_app
from conch.errors import InvalidArgument
from conch.testing.fake_engine import FakeEngine, ServerThread

from test_api_server import http

DEEP = b"[" * 200_000 + b"]" * 200_000
DEEP_OBJECT = b'{"a":' * 200_000 + b"1" + b"}" * 200_000


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    app = create_app(FakeEngine(), modules=ROUTE_MODULES + (
        routes_containers, routes_exec, routes_archive, routes_volumes, routes_networks,
        routes_build))
    with ServerThread(app, tmp_path_factory.mktemp("deep") / "api.sock") as srv:
        yield srv


def test_parse_json_refuses_deep_nesting():
    for raw in (DEEP, DEEP_OBJECT):
        with pytest.raises(InvalidArgument, match="^invalid JSON: exceeded max depth$"):
            parse_json(raw)
    assert parse_json(b"[" * 50 + b"]" * 50) == json.loads("[" * 50 + "]" * 50)


@pytest.mark.parametrize("path", ["/containers/create", "/networks/create", "/volumes/create",
                                  "/containers/x/update", "/containers/x/exec", "/auth",
                                  "/commit?container=x", "/networks/x/connect"])
def test_deep_body_is_a_400(api, path):
    for raw in (DEEP, DEEP_OBJECT):
        status, _, body = http(path, api.path, method="POST", body=raw)
        assert (status, json.loads(body)) == (400, {"message": "invalid JSON: exceeded max depth"})


def test_deep_filters_are_a_400(api):
    deep = quote("[" * 1300 + "]" * 1300)  # deeper than Python parses; fits a request line
    status, _, body = http(f"/images/json?filters={deep}", api.path)
    assert status == 400 and json.loads(body)["message"].startswith("invalid filter"), body
