"""The Dagster UI's login proxy (`siteline dagster-ui-proxy`, a real process) in front of a
real HTTP + websocket server on a Unix socket: Host, Origin, login and GraphQL-by-GET checks, and
what passes is relayed unchanged (the real dagster-webserver behind it: test_services)."""

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import pytest
import uvicorn
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.integration.servers import free_port

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"
AUTH = {"authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
MUTATION = "mutation { launchRun(executionParams: {}) { __typename } }"


class Upstream:
    """Records every request it gets; answers HTTP with JSON and echoes websocket frames."""

    def __init__(self):
        self.requests = []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            self.requests.append((scope["method"], scope["path"], scope["query_string"], body))
            answer = json.dumps({
                "method": scope["method"], "path": scope["path"], "body": body.decode(),
                "authorization": headers.get("authorization"), "host": headers.get("host"),
            }).encode()  # fmt: skip
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"x-upstream", b"yes")]})  # fmt: skip
            await send({"type": "http.response.body", "body": answer})
        elif scope["type"] == "websocket":
            await receive()
            protocol = (scope.get("subprotocols") or [None])[0]
            await send({"type": "websocket.accept", "subprotocol": protocol})
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                await send({"type": "websocket.send", "text": "echo:" + message["text"]})


@pytest.fixture(scope="module")
def proxy():
    with _proxy() as running:
        yield running


@contextlib.contextmanager
def _proxy(**settings):
    upstream = Upstream()
    port = free_port()
    # The webserver's place: a Unix socket, as `siteline up` serves dagster-webserver.
    folder = tempfile.mkdtemp(prefix="ui-proxy-")
    upstream_socket = os.path.join(folder, "upstream.sock")
    server = uvicorn.Server(uvicorn.Config(upstream, uds=upstream_socket, log_level="warning",
                                           lifespan="off"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    env = {**os.environ, "SITELINE_UI_PASSWORD": PASSWORD, "SITELINE_UI_HOSTS": "ui.example.org",
           **settings}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestration.cli", "dagster-ui-proxy", "--port", str(port),
         "--upstream-socket", upstream_socket],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "the proxy did not come up"
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{port}", port, upstream
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        server.should_exit = True
        thread.join(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
        thread.join(timeout=30)


def test_wrong_host_is_refused_before_anything_else(proxy):
    url, port, upstream = proxy
    before = len(upstream.requests)
    # A DNS-rebinding page: its own name, resolving to 127.0.0.1, with the right port.
    response = httpx.get(url + "/", headers={"host": f"rebind.attacker.test:{port}", **AUTH})
    assert response.status_code == 421
    assert "rebind.attacker.test" in response.text and "SITELINE_UI_HOSTS" in response.text
    assert httpx.get(url + "/", headers={"host": "localhost:1"}).status_code == 421
    assert len(upstream.requests) == before


def test_no_credentials_or_wrong_ones_get_401(proxy):
    url, _port, upstream = proxy
    before = len(upstream.requests)
    response = httpx.get(url + "/")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Basic realm="Siteline Dagster UI"')
    assert httpx.get(url + "/", auth=("admin", "wrong")).status_code == 401
    assert httpx.get(url + "/", auth=("root", PASSWORD)).status_code == 401
    assert httpx.get(url + "/", headers={"authorization": "Basic %%%"}).status_code == 401
    assert len(upstream.requests) == before


def test_correct_credentials_are_relayed_without_the_login(proxy):
    url, port, _upstream = proxy
    response = httpx.post(url + "/graphql", headers=AUTH, json={"query": "{ version }"})
    assert response.status_code == 200
    assert response.headers["x-upstream"] == "yes"
    seen = response.json()
    assert seen["method"] == "POST" and seen["path"] == "/graphql"
    assert json.loads(seen["body"]) == {"query": "{ version }"}
    assert seen["authorization"] is None  # the webserver never sees the password
    assert seen["host"] == f"127.0.0.1:{port}"
    # Same origin (the UI's own page) and a name from SITELINE_UI_HOSTS pass too.
    same = httpx.post(url + "/graphql", headers={**AUTH, "origin": f"http://127.0.0.1:{port}",
                                                 "sec-fetch-site": "same-origin"},
                      json={"query": "{ version }"})  # fmt: skip
    assert same.status_code == 200
    named = httpx.get(url + "/runs", headers={**AUTH, "host": "ui.example.org",
                                              "origin": "https://ui.example.org"})  # fmt: skip
    assert named.status_code == 200 and named.json()["path"] == "/runs"


def test_cross_origin_requests_are_refused(proxy):
    url, _port, upstream = proxy
    before = len(upstream.requests)
    body = {"query": "{ version }"}
    for headers in (
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"origin": "http://127.0.0.1:1"},  # another port is another origin
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
    ):
        response = httpx.post(url + "/graphql", headers={**AUTH, **headers}, json=body)
        assert response.status_code == 403, headers
    # A top-level navigation from another site to a page is fine; to /graphql it is not.
    navigate = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}
    assert httpx.get(url + "/runs", headers={**AUTH, **navigate}).status_code == 200
    graphql = httpx.get(url + "/graphql", params={"query": "{ version }"},
                        headers={**AUTH, **navigate})  # fmt: skip
    assert graphql.status_code == 403
    assert len(upstream.requests) == before + 1  # only the page


def test_a_mutation_by_get_is_refused_and_never_reaches_the_webserver(proxy):
    url, _port, upstream = proxy
    before = len(upstream.requests)
    refused = httpx.get(url + "/graphql", params={"query": MUTATION}, headers=AUTH)
    assert refused.status_code == 403
    assert "mutation" in refused.text
    # Hidden behind an operation name, a second query or broken syntax: refused as well.
    for query in (f"query A {{ version }} {MUTATION}", "mutation{", "subscription { x }"):
        response = httpx.get(url + "/graphql", params={"query": query}, headers=AUTH)
        assert response.status_code == 403, query
    assert len(upstream.requests) == before
    allowed = httpx.get(url + "/graphql", params={"query": "{ version }"}, headers=AUTH)
    assert allowed.status_code == 200


def test_wrong_logins_are_throttled_per_address():
    """Guessing the password was unlimited: the 4th wrong login within a minute (limit 3)
    gets 429 with Retry-After, and so does the right one until the minute has passed."""
    with _proxy(SITELINE_UI_LOGIN_LIMIT="3") as (url, _port, upstream):
        assert [httpx.get(url + "/").status_code for _ in range(5)] == [401] * 5  # no guesses
        assert [httpx.get(url + "/", auth=("admin", f"guess{i}")).status_code
                for i in range(3)] == [401] * 3  # fmt: skip
        refused = httpx.get(url + "/", auth=("admin", "guess3"))
        assert refused.status_code == 429
        assert "too many wrong logins from 127.0.0.1" in refused.text
        assert 1 <= int(refused.headers["retry-after"]) <= 61
        assert httpx.get(url + "/", headers=AUTH).status_code == 429
        assert upstream.requests == []


def test_websockets_are_relayed_with_their_subprotocol(proxy):
    url, port, _upstream = proxy
    ws_url = url.replace("http", "ws") + "/graphql"
    with connect(ws_url, subprotocols=["graphql-ws"], additional_headers=AUTH,
                 origin=f"http://127.0.0.1:{port}") as ws:  # fmt: skip
        assert ws.subprotocol == "graphql-ws"
        ws.send("hello")
        assert ws.recv(timeout=30) == "echo:hello"
    for headers, origin in ((AUTH, "https://evil.example"), ({}, None)):
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url, additional_headers=headers, origin=origin)
        assert refused.value.response.status_code == 403


def test_ui_password_sets_a_new_password_stored_only_as_its_hash(tmp_path):
    from orchestration.ui_proxy import verify_password

    env = {**os.environ, "SITELINE_HOME": str(tmp_path)}
    env.pop("SITELINE_UI_PASSWORD", None)
    command = [sys.executable, "-m", "orchestration.cli", "ui-password"]
    passwords = []
    for _ in range(2):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        passwords.append(re.search(r"login: admin / (\S+)", done.stdout).group(1))
    stored_file = tmp_path / "secrets" / "dagster-ui-password.scrypt"
    stored = stored_file.read_text()
    assert stored_file.stat().st_mode & 0o777 == 0o600
    assert passwords[0] != passwords[1] and passwords[1] not in stored
    assert verify_password(passwords[1], stored) and not verify_password(passwords[0], stored)
    refused = subprocess.run(command, env={**env, "SITELINE_UI_PASSWORD": "x"},
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert refused.returncode == 1
    assert "SITELINE_UI_PASSWORD is set" in refused.stderr
    assert stored_file.read_text() == stored
