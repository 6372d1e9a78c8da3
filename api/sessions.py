"""Signing in: the first admin of an empty store (its token file and one-time sign-in
link), browsers signing in with a token (a session cookie of their own), and the
public face of /readyz (a reason code; the details go to the log)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from api.auth import SESSION_COOKIE, Authenticator
from api.settings import Settings
from domain.errors import UnauthenticatedError
from domain.ledger import Ledger

log = logging.getLogger("jobledger")

SESSION_DAYS = 30


def welcome_first_admin(ledger: Ledger, settings: Settings) -> None:
    """On a store with no user yet: make the first admin, write their token to the token
    file (readable by its owner only), and print a link that signs a browser in once."""
    from jobledger_client.credentials import write_token_file  # the file the CLI and client read

    issued = ledger.identity.bootstrap(settings.admin_user, actor="jobledger serve")
    if issued is None:
        return
    path = write_token_file(issued.token, settings.token_file)
    link = ledger.identity.issue_sign_in(settings.admin_user, actor="jobledger serve")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    print(
        "\n"
        f"jobledger: created the first admin, {settings.admin_user!r} (site admin; group 'admins').\n"
        f"    Their token is in {path} (readable by you alone); the CLI, the client and the worker use it.\n"
        "    To sign in with a browser, open this link once within a day:\n"
        f"        http://{host}:{settings.port}/signin?token={link.token}\n",
        flush=True,
    )
    log.info("first admin %r created; token file %s", settings.admin_user, path)


async def sign_in(request: Request) -> Response:
    """Exchange a token (from the link's query, or a form's `token` field) for a session
    cookie holding a token of the browser's own; then on to the dashboard."""
    token = request.query_params.get("token")
    if request.method == "POST":
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        token = (form.get("token") or [token or ""])[0]
    authenticator: Authenticator = request.app.state.authenticator
    if not authenticator.enabled:
        return RedirectResponse("/", status_code=303)
    address = request.client.host if request.client else "unknown"
    if wait := authenticator.throttle.delay(address):
        await asyncio.sleep(wait)
    try:
        _, session = await request.app.state.services.call(
            request.app.state.services.ledger.identity.sign_in, (token or "").strip(), lifetime=f"{SESSION_DAYS}d"
        )
    except UnauthenticatedError as refused:
        authenticator.throttle.failed(address)
        return _refused(request, str(refused))
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        max_age=SESSION_DAYS * 86400,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


async def sign_out(request: Request) -> Response:
    """Revoke the browser's session token and forget the cookie."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        try:
            ledger = request.app.state.services.ledger
            await request.app.state.services.call(ledger.identity.revoke_token, token)
        except Exception as exc:
            log.info("sign-out: the session token could not be revoked: %s", exc)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _refused(request: Request, message: str) -> Response:
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse("/?signin=refused", status_code=303)
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]}, 401)


_REASONS = {"stalled": "stalled", "degraded": "degraded", "catching up": "catching_up", "deaf": "listener_lost"}


def public_health(ready: bool, body: dict[str, Any]) -> dict[str, Any]:
    """/readyz's answer: ready or not, a reason code, and the positions; the details of a
    failing event go to the log (and `jobledger projections status`), not to anyone asking."""
    if ready:
        return {"status": "ready", "position": body["position"], "head": body["head"], "lag": body["lag"]}
    reason = _REASONS.get(str(body.get("status")), "not_ready")
    log.warning("readyz: not ready (%s): %s", reason, body)
    return {
        "status": "not ready",
        "reason": reason,
        "position": body["position"],
        "head": body["head"],
        "lag": body["lag"],
    }
