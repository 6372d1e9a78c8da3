"""The web dashboard in a real browser: Debian's chromium driven by Playwright.

One story, on a real `jobledger serve` (SQLite): open the dashboard, name yourself,
see the filter's errors inline, submit jobs through the API and see them appear
without reloading, watch a progress bar move while `jobledger worker` runs a job,
change a job's priority, exclude a task and abort the job from its page and find
your name in its history, look at it at phone width, then restart the server and
see the page reconnect by itself. Screenshots go to the test's tmp_path.

Playwright drives the system browser (/usr/bin/chromium); it never downloads one.
Without that browser (or without playwright) the test is skipped, or fails where
JOBLEDGER_REQUIRE_BROWSER=1 says it must run (CI).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
USER = "alice@studio.example"
WAIT_MS = 15_000  # any single expectation on the page

REQUIRE_BROWSER = os.environ.get("JOBLEDGER_REQUIRE_BROWSER", "") not in ("", "0", "no", "false")


def unavailable(reason: str) -> None:
    """Skip, or fail where the browser is required (JOBLEDGER_REQUIRE_BROWSER=1, as in CI)."""
    if REQUIRE_BROWSER:
        pytest.fail(f"JOBLEDGER_REQUIRE_BROWSER is set but {reason}", pytrace=False)
    pytest.skip(reason)


try:
    from playwright import sync_api
except ImportError:  # pragma: no cover - depends on the environment
    sync_api = None  # type: ignore[assignment]


@pytest.fixture
def playwright_api() -> Any:
    if not os.path.exists(CHROMIUM):
        unavailable(f"no system chromium at {CHROMIUM}; install it with `apt-get install -y chromium`")
    if sync_api is None:
        unavailable("playwright is not installed; pip install -e '.[test]'")
    sync_api.expect.set_options(timeout=WAIT_MS)
    return sync_api


CREATE_JOB = """mutation($input: CreateJobInput!) { createJob(input: $input) { id code status } }"""


def create_job(server: Server, code: str, tasks: list[dict[str, Any]], **extra: Any) -> str:
    data = server.data(CREATE_JOB, {"input": {"code": code, "tasks": tasks, **extra}}, user="api-client")
    return str(data["createJob"]["id"])


def commands(*lines: str) -> list[dict[str, Any]]:
    return [{"source": {"kind": "command", "command": line}} for line in lines]


def restart_on_same_port(server: Server, log_path: Path) -> None:
    """Stop the server and start a new one on the same port and store (the page must notice)."""
    port = server.url.rsplit(":", 1)[1]
    server.process.terminate()
    server.process.wait(10)
    log = open(log_path, "a")  # noqa: SIM115 - closed with the process
    server.process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", port],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={
            **os.environ,
            "JOBLEDGER_AUTH": "off",
            "JOBLEDGER_WORKERS": "1",
            "JOBLEDGER_DATABASE_URL": server.store_url,
        },
        cwd=REPO,
        text=True,
    )  # the `server` fixture stops this one at the end


def wait_ready(server: Server, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.process.poll() is None, "the restarted server exited"
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("the restarted server did not become ready")


def without_toasts(page: Any) -> Any:
    """Dismiss the notices, so that full-page screenshots show the page itself."""
    page.evaluate("document.getElementById('toasts').replaceChildren()")
    return page


def no_horizontal_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    viewport = page.evaluate("window.innerWidth")
    assert width <= viewport, f"the page scrolls sideways at {viewport} px: {width} px wide"


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_dashboard_follows_jobs_live_and_acts_on_them(playwright_api: Any, server: Server, tmp_path: Path) -> None:
    expect = playwright_api.expect
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            inits: list[dict[str, Any]] = []

            def frames(ws: Any) -> None:
                def sent(payload: Any) -> None:
                    message = json.loads(payload) if isinstance(payload, str) else {}
                    if message.get("type") == "connection_init":
                        inits.append(message.get("payload") or {})

                ws.on("framesent", sent)

            page.on("websocket", frames)

            # -- open it, name yourself --------------------------------------------------------
            page.goto(f"{server.url}/")
            badge = page.locator("#live-badge")
            expect(badge).to_have_attribute("data-state", "live")
            expect(page.locator('[data-queue="default"]')).to_be_visible()
            expect(page.locator('[data-queue="default"] .queue-group')).to_have_text("group admins")
            expect(page.locator("#account")).to_be_hidden()  # authentication off: no signing in
            page.fill("#user", USER)
            page.press("#user", "Enter")
            expect(badge).to_have_attribute("data-state", "live")
            assert page.evaluate("localStorage.getItem('jobledger.user')") == USER
            page.evaluate("window.sameDocument = true")  # gone if anything reloads the page

            # -- the filter speaks the `where` language and shows its errors inline ------------------
            page.fill("#filter", "status=bogus AND")
            page.press("#filter", "Enter")
            error = page.locator("#filter-error")
            expect(error).to_be_visible()
            expect(error).to_contain_text("'bogus' is not a valid status")
            page.fill("#filter", "")
            page.press("#filter", "Enter")
            expect(error).to_be_hidden()

            # -- jobs submitted through the API appear without a reload ------------------------------
            watched = create_job(server, "render-frames", commands(*(f"sleep 1; echo frame {i}" for i in range(5))))
            doomed = create_job(
                server, "doomed-upload", commands("sleep 30; echo a", "sleep 30; echo b"), status="PAUSED"
            )
            watched_row = page.locator(f'li.job[data-job-id="{watched}"]')
            doomed_row = page.locator(f'li.job[data-job-id="{doomed}"]')
            expect(watched_row).to_be_visible()
            expect(doomed_row).to_be_visible()
            expect(doomed_row).to_have_attribute("data-status", "PAUSED")
            expect(page.locator('[data-queue="default"] [data-count="total"]')).to_have_text("2")

            # -- its progress bar moves while a worker runs it -----------------------------------------
            bar = watched_row.locator(".bar")
            expect(bar).to_have_attribute("aria-valuenow", "0")
            worker_log = open(tmp_path / "worker.log", "w")  # noqa: SIM115
            worker = subprocess.Popen(  # one task at a time (the default), commands allowed
                [sys.executable, "-m", "api.cli", "worker", "--url", server.graphql, "--allow-commands"],
                stdout=worker_log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )
            seen: list[int] = []
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    value = int(bar.get_attribute("aria-valuenow") or 0)
                    if not seen or seen[-1] != value:
                        seen.append(value)
                        if 0 < value < 100 and not (shots / "dashboard-running.png").exists():
                            page.screenshot(path=str(shots / "dashboard-running.png"), animations="disabled")
                    if watched_row.get_attribute("data-status") == "DONE":
                        break
                    time.sleep(0.05)
            finally:
                worker.terminate()
                worker.wait(10)
                worker_log.close()
            expect(watched_row).to_have_attribute("data-status", "DONE")
            expect(bar).to_have_attribute("aria-valuenow", "100")
            middle = [v for v in seen if 0 < v < 100]
            assert len(set(middle)) >= 2, f"the bar should have moved in steps, it showed {seen}"
            assert seen == sorted(seen), f"the bar went backwards: {seen}"
            expect(page.locator('[data-queue="default"] [data-count="successful"]')).to_have_text("1")
            page.screenshot(path=str(shots / "dashboard.png"), full_page=True)

            # -- on its page: change the priority, exclude a task, abort it; the history names me ----------
            doomed_row.locator("a.job-code").click()
            expect(page).to_have_url(re.compile(f"#/job/{doomed}$"))
            expect(page.locator("#job-status")).to_have_text("PAUSED")
            expect(page.locator("#tasks li.task")).to_have_count(2)

            page.fill("#priority", "900")
            page.click("button.set-priority")
            expect(page.locator(".facts")).to_contain_text("900")

            first_task = page.locator("#tasks li.task").first
            first_task.locator("button.exclude").click()
            expect(first_task).to_have_attribute("data-status", "EXCLUDED")

            page.click('button[data-action="abort"]')
            page.click('button[data-action="abort-confirm"]')
            expect(page.locator("#job-status")).to_have_text("ABORTED")
            aborted = page.locator('#events li.event[data-type="Job.StatusChanged"]').first
            expect(aborted).to_contain_text("ABORTED")
            expect(aborted.locator(".actor")).to_have_text(USER)
            expect(page.locator('#events li.event[data-type="Task.Excluded"] .actor')).to_have_text(USER)
            expect(page.locator('#events li.event[data-type="Job.Updated"] .actor')).to_have_text(USER)
            without_toasts(page).screenshot(path=str(shots / "job.png"), full_page=True)

            # the store agrees: the abort was recorded under my name
            history = server.data(
                "query($id: ID!) { job(id: $id) { events { nodes { type actor data } } } }", {"id": doomed}
            )["job"]["events"]["nodes"]
            assert any(
                e["type"] == "Job.StatusChanged" and e["data"]["status"] == "ABORTED" and e["actor"] == USER
                for e in history
            ), history

            # -- phone width: readable, nothing scrolls sideways --------------------------------------
            page.set_viewport_size({"width": 360, "height": 780})
            no_horizontal_scroll(page)
            without_toasts(page).screenshot(path=str(shots / "job-360.png"), full_page=True)
            page.click("a.back")
            expect(watched_row).to_be_visible()
            no_horizontal_scroll(page)
            without_toasts(page).screenshot(path=str(shots / "dashboard-360.png"), full_page=True)
            page.set_viewport_size({"width": 1280, "height": 900})

            # -- the server restarts: the page says so, reconnects, and is live again ---------------------
            restart_on_same_port(server, tmp_path / "server.log")
            expect(badge).to_have_attribute("data-state", "reconnecting")
            expect(badge).to_have_text("Reconnecting…")
            page.screenshot(path=str(shots / "reconnecting.png"))
            wait_ready(server)
            expect(badge).to_have_attribute("data-state", "live", timeout=20_000)
            after_restart = create_job(server, "after-restart", commands("true"), status="PAUSED")
            expect(page.locator(f'li.job[data-job-id="{after_restart}"]')).to_be_visible()

            assert page.evaluate("window.sameDocument === true"), "the page was reloaded"
            assert inits and all(i == {"X-Jobledger-User": USER} for i in inits[1:]), inits
            assert not problems, problems
        finally:
            browser.close()
