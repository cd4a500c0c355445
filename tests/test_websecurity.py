"""The browse API and page against a hostile browser and hostile input, over HTTP against a real
server (uvicorn on loopback; SQLite, and PostgreSQL where NUL matters): issue 16 items 8-10.

- A page of another site cannot make a signed-in browser write: cross-site writes are refused
  whatever they carry, API writes must be JSON, and the session cookie never authorizes a write;
  scripts with the bearer token keep working.
- Every answer of the page and API carries the security headers; the agent's answers do not.
- Bad input (a malformed kind, a NUL anywhere) is a 400, and an agent's object whose name holds
  a NUL is refused without wedging its environment on PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from snapsync.agent.transport import PATHS
from snapsync.canonical.keys import ObjectKey
from snapsync.canonical.profile import load_profile
from snapsync.canonical.snapshot import CanonicalObject, Snapshot, build_snapshot
from snapsync.codec.encode import encode_snapshot
from snapsync.protocol.auth import sign
from snapsync.protocol.messages import Chunk, CommandResult, Ping, UploadReply, decode
from snapsync.server import ServerSettings
from snapsync.server.environments import AgentSecrets, enroll
from snapsync.server.session import COOKIE, SESSION_SECONDS, Sessions
from snapsync.server.store import Stores, open_store
from snapsync.server.websecurity import CONTENT_SECURITY_POLICY
from tests.support_postgres import postgres_dsn, postgres_server  # noqa: F401 (fixtures)
from tests.support_server import live_server
from tests.test_browser import WAIT, browser, sign_in  # noqa: F401 (fixture)

TOKEN = "websecurity-test-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
COMMANDS = "/api/v1/environments/shop/commands"
SCALE = '{"name": "scale", "args": {"kind": "Deployment", "namespace": "shop", "name": "web", '
SCALE += '"replicas": 0}}'
EVIL = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}


class Site:
    """A live server with one environment, `shop`, and an HTTP client on it."""

    def __init__(self, url: str, store: Stores, secret: str) -> None:
        self.url = url
        self.store = store
        self.secret = secret.encode()
        self.http = httpx.Client(base_url=url, timeout=20, follow_redirects=False)

    def signed_in(self) -> httpx.Client:
        """A second client that signed in through the form, as a browser does."""
        signed = httpx.Client(base_url=self.url, timeout=20, follow_redirects=False)
        answer = signed.post(
            "/login",
            data={"token": TOKEN, "next": "/"},
            headers={"Origin": self.url, "Sec-Fetch-Site": "same-origin"},
        )
        assert answer.status_code == 303 and COOKIE in signed.cookies
        return signed

    def agent(self, path: str, body: bytes) -> httpx.Response:
        auth = sign(self.secret, "POST", path, "shop", body, time.time())
        return self.http.post(path, content=body, headers={"Authorization": auth})

    def upload(self, snapshot: Snapshot) -> UploadReply:
        frame = encode_snapshot(snapshot)
        upload = hashlib.blake2b(frame, digest_size=8).digest()
        chunk = Chunk(upload, b"", snapshot.digest, len(frame), 0, frame)
        answer = self.agent(PATHS[Chunk.TYPE], chunk.encode())
        assert answer.status_code == 200, answer.content
        reply = decode(answer.content, UploadReply)
        assert isinstance(reply, UploadReply)
        return reply


@contextmanager
def running(database: str) -> Iterator[Site]:
    store = open_store(database)
    made = enroll(store.registry, "Shop", time.time(), edge_id="shop")
    settings = ServerSettings(
        secrets=AgentSecrets(store.registry, None), stores=store, api_token=TOKEN
    )
    try:
        with live_server(settings) as url:
            site = Site(url, store, made.token)
            yield site
            site.http.close()
    finally:
        store.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with running(str(tmp_path / "server.db")) as made:
        yield made


def shop(name: str = "web") -> Snapshot:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"replicas": 2},
    }
    return build_snapshot([deployment], load_profile(), environment_id="shop")


# ----- item 8: cross-site writes -----------------------------------------------------------


def test_a_cross_site_form_cannot_queue_a_command_or_register(site: Site) -> None:
    """The reported attack: after the operator signed in, another site auto-submits a text/plain
    form. It is refused however the browser labels it, and nothing is queued or registered."""
    signed = site.signed_in()
    forged = [
        signed.post(COMMANDS, content=SCALE, headers={"Content-Type": "text/plain", **EVIL}),
        signed.post(COMMANDS, content=SCALE, headers={"Content-Type": "text/plain"}),
        signed.post(COMMANDS, content=SCALE, headers={"Origin": "null"}),
        signed.post(COMMANDS, content=SCALE, headers={"Origin": "http://127.0.0.1:1"}),
        signed.post(
            "/api/v1/environments",
            content='{"name": "Rogue"}',
            headers={"Content-Type": "application/x-www-form-urlencoded", **EVIL},
        ),
        # same-origin JSON with only the cookie: a session reads, it never writes
        signed.post(COMMANDS, content=SCALE, headers={"Content-Type": "application/json"}),
        # HTTP Basic, which a browser caches and sends on its own, is no credential
        signed.post(
            COMMANDS,
            content=SCALE,
            headers={"Content-Type": "application/json"},
            auth=("me", TOKEN),
        ),
    ]
    assert [a.status_code for a in forged] == [403, 415, 403, 403, 403, 401, 401]
    assert "cross-site" in forged[0].json()["error"]
    assert "application/json" in forged[1].json()["error"]
    assert site.store.commands.command_records("shop") == []
    assert [r.name for r in site.store.registry.registrations()] == ["Shop"]
    # scripts and the CLI: bearer token and JSON, no browser headers
    queued = site.http.post(
        COMMANDS, content=SCALE, headers={**BEARER, "Content-Type": "application/json"}
    )
    assert queued.status_code == 201 and queued.json()["state"] == "queued"
    made = site.http.post("/api/v1/environments", json={"name": "Kiosk"}, headers=BEARER)
    assert made.status_code == 201
    # and the server's own page, were it to write: same-origin is let through to the token check
    own = site.http.post(
        COMMANDS,
        content=SCALE,
        headers={**BEARER, "Content-Type": "application/json", "Origin": site.url},
    )
    assert own.status_code == 201


def test_the_page_signs_in_with_a_session_cookie(site: Site) -> None:
    asked = site.http.get("/env/shop?kind=Deployment.apps")
    assert asked.status_code == 303
    assert asked.headers["location"] == "/login?next=%2Fenv%2Fshop%3Fkind%3DDeployment.apps"
    cross = site.http.post("/login", data={"token": TOKEN}, headers=EVIL)
    assert cross.status_code == 403 and COOKIE not in cross.headers.get("set-cookie", "")
    wrong = site.http.post("/login", data={"token": "guess"})
    assert wrong.status_code == 401 and "not the API token" in wrong.text
    right = site.http.post("/login", data={"token": TOKEN, "next": "//evil.example/x"})
    assert right.status_code == 303 and right.headers["location"] == "/"  # never off-site
    cookie = right.headers["set-cookie"]
    for flag in ("HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"):
        assert flag in cookie, cookie
    assert TOKEN not in cookie
    value = cookie.split(";")[0].partition("=")[2]
    reader = httpx.Client(base_url=site.url, cookies={COOKIE: value}, timeout=20)
    assert reader.get("/").status_code == 200
    assert reader.get("/api/v1/environments").status_code == 200  # reads through the API too
    flipped = value[:-1] + ("1" if value.endswith("0") else "0")
    tampered = httpx.Client(base_url=site.url, cookies={COOKIE: flipped}, timeout=20)
    assert tampered.get("/api/v1/environments").status_code == 401
    out = reader.post("/logout", follow_redirects=False)
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]


def test_a_session_ends_when_it_expires_or_the_token_changes() -> None:
    now = [1_000_000.0]
    sessions = Sessions(TOKEN, lambda: now[0])
    cookie = sessions.issue()
    assert sessions.valid(cookie) and cookie != sessions.issue()  # each sign-in its own
    assert not Sessions("another-token-entirely", lambda: now[0]).valid(cookie)
    stretched = cookie.replace(cookie.split(".")[0], "9999999999")
    for forged in ("", "x", "9999999999.a.b", stretched, "é.ü.ß", "9" * 5000 + ".a.b"):
        assert not sessions.valid(forged)
    now[0] += SESSION_SECONDS
    assert not sessions.valid(cookie)


# ----- item 9: security headers ------------------------------------------------------------


def test_every_page_and_api_answer_carries_the_security_headers(site: Site) -> None:
    signed = site.signed_in()
    answers = [
        signed.get("/"),
        signed.get("/env/shop"),
        signed.get("/login"),
        signed.get("/static/snapsync.css"),
        signed.get("/api/v1/environments"),
        site.http.get("/api/v1/environments"),  # a refusal too
        site.http.post(COMMANDS, content=SCALE, headers=EVIL),  # and the guard's own
    ]
    assert [a.status_code for a in answers] == [200, 200, 303, 200, 200, 401, 403]
    for answer in answers:
        headers = answer.headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY, answer.url
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
        assert headers["referrer-policy"] == "same-origin"
    # the CSP allows no inline script or style: the templates hold none
    for page in [*answers[:2], site.http.get("/login")]:
        html = page.text.lower()
        assert "<script" not in html and "<style" not in html and " style=" not in html
    assert answers[3].headers["content-type"].startswith("text/css")
    # an idle agent pays for every byte: its answers carry none of this
    ping = site.agent(PATHS[Ping.TYPE], Ping().encode())
    assert ping.status_code == 200 and "content-security-policy" not in ping.headers


# ----- item 10: bad input is a 400 ---------------------------------------------------------


def test_bad_kinds_and_nul_are_400_not_500(site: Site) -> None:
    signed = site.signed_in()
    for path in (
        "/api/v1/environments/shop/objects?kind=.x",
        "/env/shop?kind=.x",
        "/api/v1/environments/shop/objects?name=a%00b",
        "/api/v1/environments/sh%00op",
        "/env/sh%00op",
        "/api/v1/environments/shop/objects/Pod/a%00/b",
        "/api/v1/environments/shop/commands/" + "9" * 5000,  # was an int route: a 500
    ):
        answer = signed.get(path)
        assert answer.status_code == 400, (path, answer.status_code, answer.text)
    assert "bad kind" in signed.get("/api/v1/environments/shop/objects?kind=.x").json()["error"]
    nul_name = site.http.post("/api/v1/environments", json={"name": "Shop\u0000 2"}, headers=BEARER)
    assert nul_name.status_code == 400 and "control character" in nul_name.json()["error"]
    for body in ({"name": "A", "edge_id": 5}, {"name": "B", "tags": 7}, {"name": "C", "group": {}}):
        answer = site.http.post("/api/v1/environments", json=body, headers=BEARER)
        assert answer.status_code == 400, (body, answer.text)  # a TypeError (500) before
    huge = site.http.post("/api/v1/environments", json={"name": "x" * 100_000}, headers=BEARER)
    assert huge.status_code == 413  # read no further than a registration can need


def nul_named(base: Snapshot) -> Snapshot:
    """`base` plus a Deployment whose name holds a NUL, built as a hostile agent would (no
    canonical checks: the key and the object agree, so only the NUL is wrong)."""
    ((_, good),) = shop().objects.items()
    data = {**good.data, "metadata": {"name": "we\x00b", "namespace": "shop"}}
    objects = dict(base.objects)
    objects[ObjectKey("apps", "Deployment", "shop", "we\x00b")] = CanonicalObject.from_data(data)
    return Snapshot(base.header, dict(sorted(objects.items())))


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_a_nul_in_an_object_name_is_refused_and_never_wedges_the_environment(
    engine: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    database = (
        str(tmp_path / "server.db")
        if engine == "sqlite"
        else request.getfixturevalue("postgres_dsn")
    )
    with running(database) as site:
        hostile = site.upload(nul_named(shop()))
        assert hostile.status == "rejected" and "NUL" in hostile.reason
        assert site.store.queries.versions("shop") == []
        # the environment is not stuck: the next good upload is stored at once
        good = shop()
        stored = site.upload(good)
        assert stored.status == "ack" and stored.version.digest == good.digest
        # a NUL in any URL of it is a 400, on PostgreSQL too
        for path in ("/api/v1/environments/sh%00op", "/api/v1/environments/shop/objects?kind=a%00"):
            assert site.http.get(path, headers=BEARER).status_code == 400
        assert site.http.get("/api/v1/environments/shop", headers=BEARER).status_code == 200
        # a command result whose message holds a NUL is kept (marked), not a failure every ping
        command = site.store.commands.queue_command("shop", "collect-now", {}, time.time())
        result = CommandResult(command.id, False, "bad\x00text")
        ping = site.agent(PATHS[Ping.TYPE], Ping(cursor=command.id, results=(result,)).encode())
        assert ping.status_code == 200, ping.content
        assert site.store.commands.results("shop")[command.id].message == "bad\ufffdtext"


# ----- the reported attack, in a real browser ------------------------------------------------

EVIL_PAGE = """<!doctype html><html><body>
<form id="forged" method="post" enctype="text/plain" action="{target}">
<input name='{{"name": "scale", "args": {{"kind": "Deployment", "namespace": "shop", "name": "web",
"replicas": 0}}, "pad": "' value='"}}'></form>
<script>
fetch("{target}", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain"}}, body: {body}}}).finally(
  () => document.getElementById("forged").submit());
</script></body></html>"""


@contextmanager
def evil_site(target: str) -> Iterator[str]:
    """Another origin (`localhost` on its own port, against the server's 127.0.0.1) serving a
    page that posts a command to `target` as soon as it loads: a fetch, then a form."""
    page = EVIL_PAGE.format(target=target, body=json.dumps(SCALE)).encode()

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_a_signed_in_browser_visiting_another_site_queues_nothing(
    request: pytest.FixtureRequest, site: Site
) -> None:
    """Issue 16, item 8, as reported: the operator signed in to the page, then opened another
    site's page, which auto-submitted a text/plain form to the command queue."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver = request.getfixturevalue("browser")

    sign_in(driver, site.url + "/", token=TOKEN)
    assert driver.current_url == site.url + "/"
    with evil_site(site.url + COMMANDS) as evil:
        driver.get(evil)
        # the form's submission navigates away from the evil page: wait until it has landed
        WebDriverWait(driver, WAIT).until(lambda d: not d.current_url.startswith(evil))
    # it reached the server, which refused it as cross-site before any credential check
    assert driver.current_url == site.url + COMMANDS
    assert "cross-site request refused" in driver.page_source
    assert site.store.commands.command_records("shop") == []
    # the browser's session still reads the page: nothing but the forgery was refused
    driver.get(site.url + "/env/shop")
    assert driver.current_url == site.url + "/env/shop"
