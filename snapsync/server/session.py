"""The page's sign-in: the API token typed once into a form, then a session cookie.

Why not HTTP Basic: a browser caches Basic credentials and sends them with every request to the
server, also with requests another site's page makes (a forged form POST), and it cannot sign
out. The cookie is `HttpOnly` (no script reads it), `SameSite=Lax` (a browser sends it with no
cross-site subrequest or POST, only when the person follows a link to the page), `Secure` over
HTTPS, and it only ever authorizes reads (GET/HEAD): every write of the API needs the bearer
token, which no browser sends on its own (browse.ApiAccess). Lax rather than Strict, since a
Strict cookie is not sent when following a link from a chat or a ticket, and it grants reads only.

The cookie is `EXPIRY.NONCE.MAC`, the MAC an HMAC-SHA256 keyed by the API token: no session is
kept on the server (several server processes may share one database), changing the token ends
every session, and the cookie does not reveal the token. Signing out clears the cookie in that
browser; a copied cookie stays valid until it expires (SESSION_SECONDS).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from snapsync.server.websecurity import read_capped

log = logging.getLogger("snapsync.server")
COOKIE = "snapsync_session"
SESSION_SECONDS = 12 * 3600.0  # one working day
MAX_FORM = 4096  # a sign-in form: the token and where to go next


@dataclass(frozen=True)
class Sessions:
    """Issues and checks session cookies for one API token."""

    token: str
    clock: Callable[[], float]
    lifetime: float = SESSION_SECONDS

    def issue(self) -> str:
        claim = f"{int(self.clock() + self.lifetime)}.{secrets.token_urlsafe(12)}"
        return f"{claim}.{self._mac(claim)}"

    def valid(self, value: str) -> bool:
        claim, _, mac = value.rpartition(".")
        expiry = claim.partition(".")[0]
        if not hmac.compare_digest(mac.encode(), self._mac(claim).encode()):
            return False
        return expiry.isdigit() and self.clock() < int(expiry)

    def set_cookie(self, value: str, secure: bool) -> str:
        """The Set-Cookie value that stores `value` in the browser ("" signs out)."""
        age = int(self.lifetime) if value else 0
        flags = "; Secure" if secure else ""
        return f"{COOKIE}={value}; Max-Age={age}; Path=/; HttpOnly; SameSite=Lax{flags}"

    def _mac(self, claim: str) -> str:
        key = hashlib.sha256(b"snapsync session\0" + self.token.encode()).digest()
        return hmac.new(key, claim.encode(), hashlib.sha256).hexdigest()


def local_path(target: str) -> str:
    """`target` when it is a path on this server, else `/`: never redirect elsewhere."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def sign_in_url(request: Request) -> str:
    """Where the page sends a person without a session, to come back to `request` after."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login?next=" + quote(here, safe="")


async def read_form(request: Request) -> dict[str, str] | None:
    """A small urlencoded form's fields (first value each); None when too big or not a form."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        return None
    body = await read_capped(request, MAX_FORM)
    if body is None:
        return None
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        return None
    return {name: values[0] for name, values in fields.items()}


def sign_in_routes(sessions: Sessions | None, render: Callable[..., str]) -> list[BaseRoute]:
    """GET/POST /login and POST /logout; `render(template, **context)` draws the form.

    `sessions` is None when browsing is off (no API token): the form then says so.
    """

    def form(next_path: str, status: int, error: str = "") -> Response:
        html = render("login.html", next=next_path, error=error, off=sessions is None)
        return HTMLResponse(html, status)

    async def show(request: Request) -> Response:
        next_path = local_path(request.query_params.get("next", "/"))
        cookie = request.cookies.get(COOKIE, "")
        if sessions is not None and cookie and sessions.valid(cookie):
            return RedirectResponse(next_path, 303)
        return form(next_path, 200 if sessions is not None else 403)

    async def sign_in(request: Request) -> Response:
        fields = await read_form(request)
        if fields is None:
            return form("/", 400, "send the form from this page")
        next_path = local_path(fields.get("next", "/"))
        if sessions is None:
            return form(next_path, 403)
        offered = fields.get("token", "").strip().encode()
        if not hmac.compare_digest(offered, sessions.token.encode()):
            client = request.client.host if request.client else "?"
            log.warning("sign-in refused from %s: wrong API token", client)
            return form(next_path, 401, "That is not the API token.")
        answer = RedirectResponse(next_path, 303)
        secure = request.url.scheme == "https"
        answer.headers["set-cookie"] = sessions.set_cookie(sessions.issue(), secure)
        return answer

    async def sign_out(request: Request) -> Response:
        answer = RedirectResponse("/login", 303)
        if sessions is not None:
            answer.headers["set-cookie"] = sessions.set_cookie("", request.url.scheme == "https")
        return answer

    return [
        Route("/login", show, methods=["GET"]),
        Route("/login", sign_in, methods=["POST"]),
        Route("/logout", sign_out, methods=["POST"]),
    ]
