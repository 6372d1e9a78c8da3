"""GraphiQL at /graphql, served from the package itself: it works on a machine without
internet access.

Without a browser: the page and every file it loads come from the server (relative URLs,
a Content-Security-Policy of 'self'), and the vendored files keep their licences. In a
real browser (Debian's chromium, as in test_dashboard.py) that may reach nothing but
127.0.0.1, on a server with authentication on: the editor renders, a query typed into
it runs, refused without credentials, as the admin once signed in on the dashboard (its
session cookie), and with a bearer token put in the Headers tab; the schema's docs load;
and no request ever tried to leave the machine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.api import test_dashboard
from tests.api.conftest import Server, start_server, stop_server
from tests.api.test_dashboard import CHROMIUM, CHROMIUM_ARGS, REPO

playwright_api = test_dashboard.playwright_api  # the system chromium, or skip (fail under CI)

VENDORED = REPO / "api" / "static" / "graphiql"
ME = "{ me { user } }"


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Server]:
    """A server with authentication on (SQLite); its first admin's token is in tmp_path / "token"."""
    running = start_server(
        f"sqlite:///{tmp_path / 'jobledger.db'}",
        str(tmp_path / "server.log"),
        JOBLEDGER_AUTH="on",
        JOBLEDGER_TOKEN_FILE=str(tmp_path / "token"),
    )
    yield running
    stop_server(running)


def test_the_page_and_everything_it_loads_come_from_the_server(guarded: Server) -> None:
    page = httpx.get(guarded.graphql, headers={"Accept": "text/html"}, timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "script-src 'self';" in page.headers["content-security-policy"]
    linked = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    files = [url for url in linked if not url.startswith("data:")]
    assert len(files) == 6, files  # react, react-dom, graphiql (script and style), the page's style, start.js
    for url in files:
        assert not urlsplit(url).scheme and not url.startswith("//"), f"{url} is not on this server"
        served = httpx.get(urljoin(guarded.graphql, url), timeout=30)
        assert served.status_code == 200, (url, served.status_code)
        kind = "css" if url.endswith(".css") else "javascript"
        assert kind in served.headers["content-type"], (url, served.headers["content-type"])
        assert served.content == (VENDORED / Path(url).name).read_bytes()
    start = httpx.get(urljoin(guarded.graphql, "static/graphiql/start.js"), timeout=30).text
    assert "http" not in start.replace("https:", "").replace("http:", ""), "start.js names no other host"
    for licence in ("LICENSE.graphiql", "LICENSE.react", "LICENSE.react-dom"):
        text = (VENDORED / licence).read_text()
        assert text.startswith("MIT License") or "MIT License" in text[:200], licence


def run_query(page: Any, query: str) -> None:
    """Types `query` into GraphiQL's editor in place of what is there, and runs it with Ctrl-Enter."""
    editor = page.locator(".graphiql-query-editor .CodeMirror")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.type(query)
    page.keyboard.press("Control+Enter")


def test_graphiql_runs_queries_with_no_network_beyond_the_server(
    playwright_api: Any, guarded: Server, tmp_path: Path
) -> None:
    expect = playwright_api.expect
    token = (tmp_path / "token").read_text().strip()
    elsewhere: list[str] = []  # every request that tried to leave 127.0.0.1

    def only_this_machine(route: Any) -> None:
        if urlsplit(route.request.url).hostname != "127.0.0.1":
            elsewhere.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for who in ("stranger", "bearer", "signed-in"):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                context.route("**/*", only_this_machine)
                page = context.new_page()
                problems: list[str] = []
                page.on("pageerror", lambda error, found=problems: found.append(f"page error: {error}"))
                page.on(
                    "websocket",
                    lambda socket: (
                        None if urlsplit(socket.url).hostname == "127.0.0.1" else elsewhere.append(socket.url)
                    ),
                )
                if who == "signed-in":  # the dashboard's sign-in form sets the session cookie
                    page.goto(f"{guarded.url}/")
                    page.fill("#token", token)
                    page.click('#signin button[type="submit"]')
                    expect(page.locator("#account")).to_contain_text("signed in as admin")

                page.goto(guarded.graphql)
                expect(page.locator(".graphiql-query-editor .CodeMirror")).to_be_visible()
                expect(page.locator(".graphiql-query-editor")).to_contain_text("queues")  # the page's example
                expect(page.locator("#graphiql")).not_to_contain_text("Loading")
                if who == "bearer":
                    page.get_by_role("button", name="Headers").click()
                    headers = page.locator(".graphiql-editor-tool .CodeMirror").last
                    headers.click()
                    page.keyboard.insert_text(f'{{"Authorization": "Bearer {token}"}}')

                run_query(page, ME)
                result = page.locator(".graphiql-response")
                if who == "stranger":
                    expect(result).to_contain_text('"UNAUTHENTICATED"')
                    expect(result).not_to_contain_text('"user"')
                else:
                    expect(result).to_contain_text('"user": "admin"')
                    expect(result).not_to_contain_text("errors")
                if who == "signed-in":  # the schema's docs load through the cookie too
                    page.get_by_role("button", name="Show Documentation Explorer").click()
                    expect(page.locator(".graphiql-doc-explorer")).to_contain_text("Query")
                    page.screenshot(path=str(tmp_path / "graphiql-signed-in.png"))
                assert not problems, (who, problems)
                context.close()
        finally:
            browser.close()
    assert not elsewhere, f"requests that tried to leave the machine: {elsewhere}"
