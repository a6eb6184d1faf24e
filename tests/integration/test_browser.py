"""The browser editor in headless Chromium (Debian's), driven by Playwright, against a real server.

Two pages sign in as different users and edit one document at the same time; each sees the
other's cursor; ``@bob`` typed by Ann reaches Bob's page; a page that loses its connection keeps
its edits and sends them when it is back. Every wait is on a condition in the page, never a sleep.

Chromium is Debian's ``/usr/bin/chromium`` (``make test`` and ``.ci/run`` install it); Playwright's
own browser download is never used. In CI a browser that cannot start fails these tests; elsewhere
they are skipped with the reason.

The two-user screenshot is written to ``artifacts/editor-two-users.png``; with
``MAILSLOT_UPDATE_SCREENSHOT=1`` it also replaces ``docs/editor-two-users.png`` (linked from the
README).
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mailslot.server import NodeConfig, RunningServer, start_server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WAIT_MS = 15_000 * float(os.environ.get("MAILSLOT_TEST_TIMEOUT_FACTOR", "1"))


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(
        NodeConfig(port=0, db=f"sqlite:///{tmp_path}/web.db", secret="browser-tests")
    )
    try:
        yield running
    finally:
        await running.stop()


async def sign_in(browser: Any, server: RunningServer, name: str, **size: int) -> Any:
    viewport = {"width": size.get("width", 900), "height": size.get("height", 560)}
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    # nothing may come from outside the server
    await page.route(
        "**/*",
        lambda route: (
            route.continue_() if route.request.url.startswith(server.url) else route.abort()
        ),
    )
    await page.goto(server.url + "/")
    await page.fill("#signin-name", name)
    await page.click("#signin-button")
    await page.wait_for_selector("#app:not([hidden])")
    await page.wait_for_function(
        "window.mailslot.conn && window.mailslot.conn.state === 'connected'"
    )
    return page


async def open_doc(page: Any, doc: str) -> None:
    await page.goto(page.url.split("#")[0] + f"#/d/{doc}")
    await page.wait_for_function(
        "(d) => window.mailslot.doc && window.mailslot.doc.d === d"
        " && window.mailslot.doc.version !== null",
        arg=doc,
    )


async def text_of(page: Any) -> str:
    text: str = await page.evaluate("window.mailslot.doc.text")
    return text


async def until_text(page: Any, needle: str) -> None:
    await page.wait_for_function("(n) => window.mailslot.doc.text.includes(n)", arg=needle)


async def until_settled(page: Any) -> None:
    await page.wait_for_function("!window.mailslot.doc.hasPending")


async def shared_doc(ann: Any, bob: Any, doc: str) -> None:
    await ann.fill("#new-doc-name", doc)
    await ann.click("#create-doc")
    await ann.wait_for_function(
        "(d) => window.mailslot.doc && window.mailslot.doc.d === d", arg=doc
    )
    await ann.click("#share-btn")
    await ann.fill("#share-user", "bob")
    await ann.click("#share-form button[type=submit]")
    await ann.wait_for_selector("#members li:nth-child(2)")
    await ann.click("#share-close")
    await bob.wait_for_selector(f"#doc-list a[href='#/d/{doc}']")
    await open_doc(bob, doc)


async def test_two_users_edit_at_once_converge_and_see_each_other(
    browser: Any, server: RunningServer
) -> None:
    ann = await sign_in(browser, server, "ann", width=780, height=520)
    bob = await sign_in(browser, server, "bob", width=780, height=520)
    await shared_doc(ann, bob, "plan")
    await ann.click("#editor")
    await ann.keyboard.type("Launch plan\n\n")
    await until_text(bob, "Launch plan")
    await bob.click("#editor")
    await bob.keyboard.press("Control+End")
    # both type at the same time, at different places
    await asyncio.gather(
        ann.keyboard.type("1. Ship the editor 🚀\n"),
        bob.keyboard.type("2. Ask for review\n"),
    )
    for page in (ann, bob):
        await until_text(page, "Ship the editor 🚀")
        await until_text(page, "Ask for review")
        await until_settled(page)
    await ann.wait_for_function("(t) => window.mailslot.doc.text === t", arg=await text_of(bob))
    final = await text_of(ann)
    assert final == await text_of(bob)
    assert final.startswith("Launch plan\n\n")
    assert await ann.input_value("#editor") == final  # what the person sees is the document
    # each sees the other's cursor, with the name, and who is here
    await ann.wait_for_selector(".caret[data-name='bob']")
    await bob.wait_for_selector(".caret[data-name='ann']")
    assert await ann.locator("#who .avatar").count() == 2
    # the server has what both pages show
    async with __import__("httpx").AsyncClient(base_url=server.url) as http:
        token = await ann.evaluate("sessionStorage.getItem('mailslot.token')")
        doc = await http.get("/api/docs/plan", headers={"authorization": f"Bearer {token}"})
        assert doc.json()["data"] == final
    # a selection and a mention, for the picture in the README
    await ann.keyboard.press("Control+End")
    await ann.keyboard.type("3. @bob writes the release notes ")
    await bob.wait_for_selector("#badge:not([hidden])")
    await bob.keyboard.press("Shift+ArrowUp")
    await ann.wait_for_function(
        "() => [...document.querySelectorAll('#highlights mark')].length > 0"
    )
    await save_screenshot(browser, ann, bob)
    assert ann.errors == []
    assert bob.errors == []


async def test_a_mention_reaches_the_other_page(browser: Any, server: RunningServer) -> None:
    ann = await sign_in(browser, server, "ann")
    bob = await sign_in(browser, server, "bob")
    await shared_doc(ann, bob, "notes")
    await bob.wait_for_selector("#badge:not([hidden])")  # the share
    before = int(await bob.inner_text("#badge"))
    await ann.click("#editor")
    await ann.keyboard.type("Could @bob check the numbers? ")
    await bob.wait_for_function(
        "(n) => document.querySelector('#badge').textContent === String(n)", arg=before + 1
    )
    await bob.click("#bell")
    item = bob.locator("#inbox-list li.unread").first
    await item.wait_for()
    assert "mentioned you" in await item.inner_text()
    assert "@bob" in await item.inner_text()
    await item.click()
    await bob.wait_for_function(
        "(n) => document.querySelector('#badge').textContent === String(n)", arg=before
    )


async def test_a_page_that_loses_its_connection_keeps_its_edits(
    browser: Any, server: RunningServer, tmp_path: Path
) -> None:
    ann = await sign_in(browser, server, "ann", width=780, height=520)
    bob = await sign_in(browser, server, "bob", width=780, height=520)
    await shared_doc(ann, bob, "offline")
    await ann.click("#editor")
    await ann.keyboard.type("Shared start. ")
    await until_text(bob, "Shared start.")

    # a lost connection: the socket drops; the page reconnects by itself
    await bob.evaluate("window.mailslot.conn.ws.close()")
    await bob.wait_for_function("window.mailslot.conn.state !== 'connected'")
    await bob.wait_for_function("window.mailslot.conn.state === 'connected'")

    # offline for a while: edits stay in the page, marked as not sent
    await bob.evaluate("window.mailslot.conn.block()")
    await bob.wait_for_function("window.mailslot.conn.state === 'disconnected'")
    await bob.click("#editor")
    await bob.keyboard.press("Control+End")
    await bob.keyboard.type("Bob wrote this offline.")
    await ann.keyboard.type("Ann kept going.")
    await bob.wait_for_function("window.mailslot.doc.hasPending")
    assert "kept" in (await bob.inner_text("#saved"))
    await until_settled(ann)
    assert "offline" not in await text_of(ann)

    await bob.evaluate("window.mailslot.conn.unblock()")
    for page in (ann, bob):
        await until_text(page, "Bob wrote this offline.")
        await until_text(page, "Ann kept going.")
        await until_settled(page)
    await bob.wait_for_function("(t) => window.mailslot.doc.text === t", arg=await text_of(ann))
    assert await text_of(ann) == await text_of(bob)
    await ann.wait_for_selector(".caret[data-name='bob']")
    await bob.wait_for_selector(".caret[data-name='ann']")


async def save_screenshot(browser: Any, left: Any, right: Any) -> None:
    """Both pages side by side in one picture (composed by the browser itself)."""
    shots = [base64.b64encode(await p.screenshot()).decode() for p in (left, right)]
    page = await browser.new_page(viewport={"width": 1600, "height": 560})
    html = (
        "<body style='margin:0;display:flex;gap:40px;background:#cbd5e1'>"
        + "".join(f"<img src='data:image/png;base64,{s}' width='780'>" for s in shots)
        + "</body>"
    )
    await page.set_content(html)
    out = ROOT / "artifacts" / "editor-two-users.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(out))
    if os.environ.get("MAILSLOT_UPDATE_SCREENSHOT"):
        shutil.copyfile(out, ROOT / "docs" / "editor-two-users.png")
    assert out.stat().st_size > 10_000
