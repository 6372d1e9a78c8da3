"""The dashboard for the people who use it every day, in a real browser (as test_dashboard.py).

A worker holds tasks: the workers panel names it, what it runs, its speed and counts; the
throughput chart (uPlot, a canvas) has a point per minute of the last hour and counts a
task the moment it finishes; queue cards come in priority order; at phone width the jobs
come before the queues; on a job's page every button is enabled only where its move is
allowed (Abort on a FAILED job, Exclude on a DONE task: disabled) and the caller's role lets
them make it (a viewer: none); a running transfer shows its speed, time left and size. Beside
the browser: the `workers` and `throughput` queries show only what the caller reads, and the
page's copy of the transition tables is the domain's.

Screenshots (desktop 1280x800, phone 390x844) go to $JOBLEDGER_SCREENSHOTS, else tmp_path.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from domain import job as job_domain
from domain import task as task_domain
from tests.api import test_dashboard
from tests.api.conftest import Server
from tests.api.test_dashboard import (
    CHROMIUM,
    CHROMIUM_ARGS,
    REPO,
    commands,
    create_job,
    no_horizontal_scroll,
    without_toasts,
)
from tests.api.test_dashboard_signin import admin_token, as_user, ask, guarded, mint_token, sign_in  # noqa: F401

playwright_api = test_dashboard.playwright_api  # the system chromium, or skip

WORKER = "render-node-7"
CLAIM = """mutation($worker: String!, $limit: Int, $queues: [String!]) {
  claimTasks(worker: $worker, limit: $limit, queues: $queues) { id task { uri job { code } } }
}"""
HEARTBEAT = "mutation($l: ID!, $p: Int, $s: Float) { heartbeat(leaseId: $l, progress: $p, speed: $s) { id } }"
COMPLETE = "mutation($l: ID!) { completeTask(leaseId: $l) { id status } }"
FAIL = 'mutation($l: ID!) { failTask(leaseId: $l, error: "disk full", retry: false) { id status } }'
CREATE_QUEUE = "mutation($code: String!, $p: Int!) { createQueue(input: {code: $code, priority: $p}) { id } }"
WORKERS = "{ workers { name holding claimed done failed speed lastHeartbeat tasks { uri job { code } } } }"
THROUGHPUT = "query($m: Int) { throughput(minutes: $m) { minute done failed queued } }"


def shots_folder(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("JOBLEDGER_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def claim(server: Server, limit: int, worker: str = WORKER) -> dict[str, str]:
    """Lease ids by "<job code>#<task uri>"."""
    leases = server.data(CLAIM, {"worker": worker, "limit": limit}, user=worker)["claimTasks"]
    assert len(leases) == limit, leases
    return {f"{lease['task']['job']['code']}#{lease['task']['uri']}": lease["id"] for lease in leases}


def open_page(playwright: Any, server: Server, width: int, height: int) -> tuple[Any, Any, list[str]]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": width, "height": height})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.goto(f"{server.url}/")
    return browser, page, problems


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_workers_throughput_queue_order_and_phone_layout(playwright_api: Any, server: Server, tmp_path: Path) -> None:
    expect = playwright_api.expect
    shots = shots_folder(tmp_path)
    server.data(CREATE_QUEUE, {"code": "bulk", "p": 100})
    server.data(CREATE_QUEUE, {"code": "urgent", "p": 900})
    job_id = create_job(server, "nightly-render", commands(*(f"render frame {i}" for i in range(4))))
    leases = claim(server, 3)
    assert set(leases) == {"nightly-render#0", "nightly-render#1", "nightly-render#2"}
    server.data(HEARTBEAT, {"l": leases["nightly-render#0"], "p": 40, "s": 12.5}, user=WORKER)
    server.data(COMPLETE, {"l": leases["nightly-render#1"]}, user=WORKER)
    server.data(FAIL, {"l": leases["nightly-render#2"]}, user=WORKER)
    queues = server.data("{ queues { nodes { code priority } } }")["queues"]["nodes"]
    by_priority = [q["code"] for q in sorted(queues, key=lambda q: (-q["priority"], q["code"]))]
    assert by_priority[0] == "urgent" and by_priority[-1] == "bulk"

    with playwright_api.sync_playwright() as playwright:
        browser, page, problems = open_page(playwright, server, 1280, 800)
        try:
            expect(page.locator("#live-badge")).to_have_attribute("data-state", "live")

            # -- the worker, what it runs, its speed and what it did -------------------------
            worker = page.locator(f'#workers li.worker[data-worker="{WORKER}"]')
            expect(worker).to_be_visible()
            expect(worker).to_have_attribute("data-state", "busy")
            expect(worker.locator(".worker-tasks")).to_contain_text("nightly-render #0")
            expect(worker.locator(".worker-tasks .status")).to_have_text("EXECUTING")
            expect(worker.locator(".speed")).to_have_text("12.5 MB/s")
            expect(worker.locator(".holding")).to_have_text("runs 1")
            expect(worker).to_contain_text("1 done · 1 failed")
            expect(worker.locator(".worker-seen time")).to_have_text(re.compile(r"just now|\d+ s ago"))
            worker.locator(".worker-tasks a").click()
            expect(page).to_have_url(re.compile(f"#/job/{job_id}$"))
            page.click("a.back")

            # -- the chart: a canvas, a point per minute, what finished and what waits --------
            chart = page.locator("#throughput-chart")
            expect(chart.locator("canvas").first).to_be_visible()
            expect(chart).to_have_attribute("data-points", "60")
            expect(chart).to_have_attribute("data-done", "1")
            expect(chart).to_have_attribute("data-failed", "1")
            expect(chart).to_have_attribute("data-queued", "1")
            expect(page.locator("#throughput-summary")).to_have_text(
                "In the last hour 1 task DONE and 1 FAILED; 1 QUEUED now."
            )
            box = chart.locator("canvas").first.bounding_box()
            assert box is not None and box["width"] > 400 and box["height"] > 100, box
            server.data(COMPLETE, {"l": leases["nightly-render#0"]}, user=WORKER)  # live: no reload
            expect(chart).to_have_attribute("data-done", "2")
            expect(worker).to_have_attribute("data-state", "idle")
            expect(worker).to_contain_text("2 done · 1 failed")

            # -- queue cards, highest priority first; their status in the contract's words ----
            expect(page.locator("[data-queue]")).to_have_count(len(queues))
            shown = page.locator("[data-queue]").evaluate_all("cards => cards.map(c => c.dataset.queue)")
            assert shown == by_priority
            expect(page.locator('[data-queue="urgent"] .state').first).to_have_text("WAITING")
            without_toasts(page).screenshot(path=str(shots / "daily-desktop-1280.png"), full_page=True)

            # -- a phone: the jobs come first, nothing scrolls sideways ---------------------------
            page.set_viewport_size({"width": 390, "height": 844})
            expect(page.locator(f'li.job[data-job-id="{job_id}"]')).to_be_visible()
            jobs_top = page.locator("#jobs").bounding_box()["y"]
            assert jobs_top < page.locator("#queues").bounding_box()["y"]
            assert jobs_top < page.locator("#workers").bounding_box()["y"]
            assert jobs_top < 844, "the first job shows on the first screen"
            no_horizontal_scroll(page)
            expect(chart.locator("canvas").first).to_be_visible()
            assert chart.locator("canvas").first.bounding_box()["width"] <= 390
            without_toasts(page).screenshot(path=str(shots / "daily-phone-390.png"), full_page=True)
            assert not problems, problems
        finally:
            browser.close()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_buttons_are_enabled_only_where_the_move_is_allowed(
    playwright_api: Any, server: Server, tmp_path: Path
) -> None:
    expect = playwright_api.expect
    shots = shots_folder(tmp_path)
    failed = create_job(server, "broken-render", commands("exit 3"))
    mixed = create_job(server, "half-done", commands("step one", "step two"))
    leases = claim(server, 2)
    assert set(leases) == {"broken-render#0", "half-done#0"}, leases
    server.data(FAIL, {"l": leases["broken-render#0"]}, user=WORKER)  # its only task: FAILED
    assert server.data("query($id: ID!) { job(id: $id) { status } }", {"id": failed})["job"]["status"] == "FAILED"
    server.data(COMPLETE, {"l": leases["half-done#0"]}, user=WORKER)  # one DONE, one QUEUED

    with playwright_api.sync_playwright() as playwright:
        browser, page, problems = open_page(playwright, server, 1280, 800)
        try:
            page.goto(f"{server.url}/#/job/{failed}")
            expect(page.locator("#job-status")).to_have_text("FAILED")
            expect(page.locator('button[data-action="abort"]')).to_be_disabled()
            expect(page.locator('button[data-action="pause"]')).to_be_disabled()
            resume = page.locator('button[data-action="resume"]')
            expect(resume).to_have_text("Run again")
            expect(resume).to_be_enabled()
            expect(page.locator("#tasks li.task button.exclude")).to_be_enabled()  # a FAILED task may be skipped
            without_toasts(page).screenshot(path=str(shots / "daily-failed-job.png"), full_page=True)

            page.goto(f"{server.url}/#/job/{mixed}")
            expect(page.locator("#job-status")).to_have_text(re.compile("WAITING|RUNNING"))
            expect(page.locator('button[data-action="abort"]')).to_be_enabled()
            expect(page.locator('button[data-action="pause"]')).to_be_enabled()
            expect(page.locator('button[data-action="resume"]')).to_be_disabled()
            done_task = page.locator('#tasks li.task[data-status="DONE"]')
            expect(done_task.locator("button.exclude")).to_be_disabled()
            expect(page.locator('#tasks li.task[data-status="QUEUED"] button.exclude')).to_be_enabled()

            # the last task DONE: the job is DONE, and running it again asks first
            (last,) = claim(server, 1).values()
            server.data(COMPLETE, {"l": last}, user=WORKER)
            expect(page.locator("#job-status")).to_have_text("DONE")
            expect(page.locator('button[data-action="abort"]')).to_be_disabled()
            expect(page.locator("#tasks li.task button.exclude:enabled")).to_have_count(0)
            page.click('button[data-action="resume"]')
            expect(page.locator(".confirm")).to_contain_text("Run every task of this DONE job again?")
            page.click('button[data-action="rerun-cancel"]')
            expect(page.locator("#job-status")).to_have_text("DONE")

            # -- a running transfer: speed, time left and size, where it said "speed — time left —"
            transfer = create_job(
                server, "big-copy", [{"source": "/media/big.mov", "destination": "/out/big.mov", "size": 10**9}]
            )
            (lease,) = claim(server, 1).values()
            heartbeat = (
                "mutation($l: ID!) { heartbeat(leaseId: $l, progress: 25, bytesDone: 250000000, speed: 50.0) { id } }"
            )
            server.data(heartbeat, {"l": lease}, user=WORKER)
            page.goto(f"{server.url}/#/job/{transfer}")
            expect(page.locator("#job-status")).to_have_text("RUNNING")
            expect(page.locator("#job-speed")).to_have_text("speed 50.0 MB/s")
            expect(page.locator("#job-etr")).to_have_text(re.compile(r"time left 1[45]s"))  # 750 MB at 50 MB/s
            expect(page.locator("#job-size")).to_have_text("size 1.0 GB")
            expect(page.locator("#tasks li.task .task-meta")).to_contain_text("50.0 MB/s")
            expect(page.locator("#tasks li.task .task-meta")).to_contain_text("left")
            expect(page.locator('button[data-action="abort"]')).to_be_enabled()
            without_toasts(page).screenshot(path=str(shots / "daily-running-transfer.png"), full_page=True)
            assert not problems, problems
        finally:
            browser.close()


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
def test_workers_and_throughput_show_only_the_queues_the_caller_reads(
    guarded: Server,  # noqa: F811 - the fixture imported above
    store_url: str,
    tmp_path: Path,
) -> None:
    admin = admin_token(tmp_path)
    worker = mint_token(store_url, "farm", "studio", "worker")
    viewer = mint_token(store_url, "vera", "studio", "viewer")
    outsider = mint_token(store_url, "olga", "press", "viewer")
    as_user(guarded, admin, 'mutation { createQueue(input: {code: "renders", group: "studio"}) { id } }')
    as_user(
        guarded,
        admin,
        test_dashboard.CREATE_JOB,
        {
            "input": {
                "code": "cut",
                "queue": "renders",
                "destination": "/out",
                "tasks": [{"source": "/in/a.mov"}, {"source": "/in/b.mov"}],
            }
        },
    )
    leases = as_user(guarded, worker, CLAIM, {"worker": "farm-1", "limit": 2, "queues": ["renders"]})["claimTasks"]
    as_user(guarded, worker, COMPLETE, {"l": leases[0]["id"]})

    seen = as_user(guarded, viewer, WORKERS)["workers"]
    assert [(w["name"], w["holding"], w["claimed"], w["done"], w["failed"]) for w in seen] == [("farm-1", 1, 2, 1, 0)]
    assert [t["job"]["code"] for t in seen[0]["tasks"]] == ["cut"]
    points = as_user(guarded, viewer, THROUGHPUT, {"m": 5})["throughput"]
    assert len(points) == 5 and sum(p["done"] for p in points) == 1 and points[-1]["queued"] == 0

    assert as_user(guarded, outsider, WORKERS)["workers"] == []
    assert sum(p["done"] for p in as_user(guarded, outsider, THROUGHPUT, {"m": 5})["throughput"]) == 0
    assert as_user(guarded, admin, WORKERS)["workers"][0]["name"] == "farm-1"  # a site admin reads every group

    refused = ask(guarded, THROUGHPUT, {"m": 5000}, Authorization=f"Bearer {viewer}")["errors"][0]
    assert refused["extensions"]["code"] == "VALIDATION" and "1 to 1440" in refused["message"]
    anonymous = ask(guarded, WORKERS)["errors"][0]
    assert anonymous["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_viewer_sees_the_workers_but_no_button_it_may_not_use(
    playwright_api: Any,
    guarded: Server,  # noqa: F811 - the fixture imported above
    store_url: str,
    tmp_path: Path,
) -> None:
    expect = playwright_api.expect
    admin = admin_token(tmp_path)
    worker = mint_token(store_url, "farm", "studio", "worker")
    viewer = mint_token(store_url, "vera", "studio", "viewer")
    as_user(guarded, admin, 'mutation { createQueue(input: {code: "renders", group: "studio"}) { id } }')
    job = as_user(
        guarded,
        admin,
        test_dashboard.CREATE_JOB,
        {"input": {"code": "grade", "queue": "renders", "destination": "/out", "tasks": [{"source": "/in/a.mov"}]}},
    )["createJob"]["id"]
    as_user(guarded, worker, CLAIM, {"worker": "farm-1", "limit": 1, "queues": ["renders"]})
    with playwright_api.sync_playwright() as playwright:
        browser, page, problems = open_page(playwright, guarded, 1280, 800)
        try:
            sign_in(page, viewer)
            expect(page.locator("#account")).to_contain_text("signed in as vera")
            farm = page.locator('#workers li.worker[data-worker="farm-1"]')
            expect(farm).to_have_attribute("data-state", "busy")
            expect(farm.locator(".worker-tasks")).to_contain_text("grade #0")
            page.goto(f"{guarded.url}/#/job/{job}")
            expect(page.locator("#job-status")).to_have_text("RUNNING")
            for action in ("pause", "resume", "abort"):
                button = page.locator(f'button[data-action="{action}"]')
                expect(button).to_be_disabled()
                expect(button).to_have_attribute("title", re.compile("Your role"))
            expect(page.locator("button.set-priority")).to_be_disabled()
            expect(page.locator("#tasks li.task button.exclude")).to_be_disabled()
            assert not problems, problems
        finally:
            browser.close()


def js_table(source: str, name: str) -> dict[str, set[str]]:
    """The object literal `const NAME = {...};` of app.js, as statuses to sets of statuses."""
    found = re.search(rf"const {name} = (\{{.*?\}});", source, re.S)
    assert found, f"{name} is not in app.js"
    literal = re.sub(r"(\w+):", r'"\1":', found.group(1)).replace(",\n  }", "\n  }")
    return {key: set(value) for key, value in json.loads(re.sub(r",\s*}", "}", literal)).items()}


def test_the_pages_transition_tables_are_the_domains() -> None:
    """The buttons follow app.js's copy of the domain's tables: it must not drift from them."""
    source = (REPO / "api" / "static" / "app.js").read_text()
    for name, allowed, settable in (
        ("JOB_MOVES", job_domain.ALLOWED, job_domain.USER_SETTABLE),
        ("TASK_MOVES", task_domain.ALLOWED, task_domain.USER_SETTABLE),
    ):
        expected = {str(status): {str(s) for s in targets & settable} for status, targets in allowed.items()}
        assert js_table(source, name) == expected, name
