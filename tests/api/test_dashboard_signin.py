"""Signing in to the web dashboard, in a real browser, on a `jobledger serve` with
authentication on.

The first story: a stranger sees the sign-in form and no data; a bad token is refused
and the page says so; the first admin's token (from the token file `jobledger serve`
wrote) signs in, and the dashboard shows the default queue, a job submitted through the
API and its progress while `jobledger worker` runs it, all through the session cookie;
signing out brings the form back and the old cookie opens nothing any more.
The second: a viewer of one group sees that group's queue and its job, not the admins'.

Playwright drives the system browser, as in test_dashboard.py (whose fixture and
helpers this borrows); without it the tests are skipped, or fail under
JOBLEDGER_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api import test_dashboard
from tests.api.conftest import Server, start_server, stop_server
from tests.api.test_dashboard import CHROMIUM, CHROMIUM_ARGS, REPO, commands, no_horizontal_scroll

playwright_api = test_dashboard.playwright_api  # the same fixture: the system chromium, or skip

SESSION_COOKIE = "jobledger_session"
CREATE_JOB = """mutation($input: CreateJobInput!) { createJob(input: $input) { id } }"""


@pytest.fixture
def guarded(store_url: str, tmp_path: Path) -> Iterator[Server]:
    """A server with authentication on; its first admin's token is in tmp_path / "token"."""
    running = start_server(
        store_url, str(tmp_path / "server.log"), JOBLEDGER_AUTH="on", JOBLEDGER_TOKEN_FILE=str(tmp_path / "token")
    )
    yield running
    stop_server(running)


def admin_token(tmp_path: Path) -> str:
    return (tmp_path / "token").read_text().strip()


def ask(server: Server, query: str, variables: dict[str, Any] | None = None, **headers: str) -> dict[str, Any]:
    """POST a GraphQL request with these headers; the whole answer."""
    body = {"query": query, "variables": variables or {}}
    return httpx.post(server.graphql, json=body, headers=headers, timeout=30).json()  # type: ignore[no-any-return]


def as_user(server: Server, token: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST with a bearer token and expect success: the `data` part."""
    answer = ask(server, query, variables, Authorization=f"Bearer {token}")
    assert "errors" not in answer, answer["errors"]
    return answer["data"]  # type: ignore[no-any-return]


def create_job(server: Server, token: str, code: str, tasks: list[dict[str, Any]], **extra: Any) -> str:
    data = as_user(server, token, CREATE_JOB, {"input": {"code": code, "tasks": tasks, **extra}})
    return str(data["createJob"]["id"])


def mint_token(store_url: str, user: str, group: str, role: str) -> str:
    """What an operator does on the server's machine: `jobledger token create`."""
    made = subprocess.run(
        [sys.executable, "-m", "api.cli", "token", "create", "--user", user, "--group", group, "--role", role],
        env={**os.environ, "JOBLEDGER_DATABASE_URL": store_url},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def sign_in(page: Any, token: str) -> None:
    page.fill("#token", token)
    page.click('#signin button[type="submit"]')


def expect_signed_out(expect: Any, page: Any) -> None:
    """The sign-in form, and nothing of the dashboard."""
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#signin")).to_contain_text("jobledger token create --user NAME")
    expect(page.locator("#signin")).to_contain_text("jobledger serve")
    expect(page.locator("#queues")).to_have_count(0)
    expect(page.locator("#jobs")).to_have_count(0)
    expect(page.locator("#account")).to_be_hidden()
    expect(page.locator("#live-badge")).to_be_hidden()
    expect(page.locator("#user")).to_be_hidden()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_signing_in_with_a_token_opens_the_dashboard_and_signing_out_closes_it(
    playwright_api: Any, guarded: Server, tmp_path: Path
) -> None:
    expect = playwright_api.expect
    shots = tmp_path / "screenshots"
    shots.mkdir()
    token = admin_token(tmp_path)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

            # -- a stranger: the form, no data ------------------------------------------------
            page.goto(f"{guarded.url}/")
            expect_signed_out(expect, page)
            expect(page.locator(".signin-note")).to_have_count(0)
            page.screenshot(path=str(shots / "signin.png"))
            page.set_viewport_size({"width": 360, "height": 780})
            no_horizontal_scroll(page)
            page.screenshot(path=str(shots / "signin-360.png"))
            page.set_viewport_size({"width": 1280, "height": 900})

            # -- a bad token is refused, and the page says so -----------------------------------
            sign_in(page, "jl_000000000000_not-a-token")
            expect(page.locator("#signin-refused")).to_contain_text("Token refused")
            expect_signed_out(expect, page)
            assert "signin=refused" not in page.url, "reloading would say it again"
            assert not [c for c in context.cookies() if c["name"] == SESSION_COOKIE]
            page.screenshot(path=str(shots / "signin-refused.png"))

            # -- the first admin's token signs in -------------------------------------------------
            sign_in(page, token)
            expect(page.locator("#signin")).to_have_count(0)
            expect(page.locator("#account")).to_contain_text("signed in as admin")
            expect(page.locator("#user")).to_be_hidden()
            expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")
            default_queue = page.locator('[data-queue="default"]')
            expect(default_queue).to_be_visible()
            expect(default_queue.locator(".queue-group")).to_have_text("group admins")
            (cookie,) = [c for c in context.cookies() if c["name"] == SESSION_COOKIE]
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
            assert page.evaluate("document.cookie") == "", "the session is out of the page's reach"
            # a used-up sign-in link, opened while signed in: refused, and still signed in
            page.goto(f"{guarded.url}/signin?token=jl_000000000000_used-up")
            expect(page.locator(".toast.error")).to_contain_text("still signed in as admin")
            expect(page.locator("#account")).to_contain_text("signed in as admin")
            expect(default_queue).to_be_visible()

            # -- a job submitted through the API appears, and its progress arrives live --------------
            watched = create_job(guarded, token, "render-frames", commands(*(f"sleep 1; echo {i}" for i in range(4))))
            row = page.locator(f'li.job[data-job-id="{watched}"]')
            expect(row).to_be_visible()
            expect(page.locator('[data-queue="default"] [data-count="total"]')).to_have_text("1")
            bar = row.locator(".bar")
            expect(bar).to_have_attribute("aria-valuenow", "0")
            seen = run_worker_watching(guarded, token, row, bar, tmp_path / "worker.log")
            expect(row).to_have_attribute("data-status", "DONE")
            expect(bar).to_have_attribute("aria-valuenow", "100")
            assert [v for v in seen if 0 < v < 100], f"no progress arrived between 0 and 100: {seen}"
            assert seen == sorted(seen), f"the bar went backwards: {seen}"
            # the job's page follows it too, as the one signed in
            row.locator("a.job-code").click()
            expect(page.locator("#job-status")).to_have_text("DONE")
            expect(page.locator('#events li.event[data-type="Job.Created"] .actor')).to_have_text("admin")
            page.screenshot(path=str(shots / "signed-in.png"), full_page=True)
            page.set_viewport_size({"width": 360, "height": 780})
            no_horizontal_scroll(page)
            page.screenshot(path=str(shots / "signed-in-360.png"), full_page=True)
            page.set_viewport_size({"width": 1280, "height": 900})

            # -- signing out: the form again, and the old cookie opens nothing -----------------------
            page.click("#sign-out")
            expect_signed_out(expect, page)
            expect(page.locator(".signin-note")).to_have_count(0)
            assert not [c for c in context.cookies() if c["name"] == SESSION_COOKIE]
            old = ask(guarded, "{ me { user } }", Cookie=f"{SESSION_COOKIE}={cookie['value']}")
            assert old["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", old
            page.reload()
            expect_signed_out(expect, page)
            assert not problems, problems
        finally:
            browser.close()


def run_worker_watching(server: Server, token: str, row: Any, bar: Any, log_path: Path) -> list[int]:
    """Run `jobledger worker` (with the admin's token) until the row says DONE; the
    values its bar showed meanwhile, in order."""
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "worker", "--url", server.graphql, "--token", token, "--allow-commands"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    seen: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and row.get_attribute("data-status") != "DONE":
            value = int(bar.get_attribute("aria-valuenow") or 0)
            if not seen or seen[-1] != value:
                seen.append(value)
            time.sleep(0.05)
    finally:
        worker.terminate()
        worker.wait(10)
        log.close()
    seen.append(int(bar.get_attribute("aria-valuenow") or 0))
    return seen


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_viewer_sees_the_queues_of_their_group_and_not_the_admins(
    playwright_api: Any, guarded: Server, store_url: str, tmp_path: Path
) -> None:
    expect = playwright_api.expect
    admin = admin_token(tmp_path)
    viewer = mint_token(store_url, "vera", "studio", "viewer")
    as_user(guarded, admin, 'mutation { createQueue(input: {code: "renders", group: "studio"}) { id } }')
    theirs = create_job(guarded, admin, "studio-cut", [{"source": "/media/cut.mov"}], queue="renders", status="PAUSED")
    hidden = create_job(guarded, admin, "admins-only", [{"source": "/media/secret.mov"}], status="PAUSED")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.goto(f"{guarded.url}/")
            expect_signed_out(expect, page)
            sign_in(page, viewer)
            expect(page.locator("#account")).to_contain_text("signed in as vera")
            renders = page.locator('[data-queue="renders"]')
            expect(renders).to_be_visible()
            expect(renders.locator(".queue-group")).to_have_text("group studio")
            expect(page.locator(f'li.job[data-job-id="{theirs}"]')).to_be_visible()
            expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")
            expect(page.locator("[data-queue]")).to_have_count(1)
            expect(page.locator(f'li.job[data-job-id="{hidden}"]')).to_have_count(0)
            expect(page.locator("#jobs li.job")).to_have_count(1)
            page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)

            # -- signed out elsewhere (another tab): the next request brings the form back --------
            (cookie,) = [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
            elsewhere = httpx.post(f"{guarded.url}/signout", cookies={SESSION_COOKIE: cookie["value"]}, timeout=30)
            assert elsewhere.status_code == 303, elsewhere
            page.click('.filter button[type="submit"]')
            expect(page.locator("#signin-ended")).to_contain_text("You are signed out")
            expect_signed_out(expect, page)
            assert not problems, problems
        finally:
            browser.close()
