"""The browser the hosted sign-in's tests drive: headless Chromium, offline, filling a server-rendered
form as a person would; and the pages of a failing browser test kept as pictures."""

from __future__ import annotations

import os
import subprocess
import sys
from html import escape
from pathlib import Path

import pytest
from selenium.common.exceptions import WebDriverException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.helpers.browser import Browser
from tests.helpers.loopback import serve_asgi

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


async def _ask(_: Request) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><title>Sign in</title><h1>Sign in</h1>"
        '<form method="post"><label for="email">E-mail address</label> <input id="email" name="email">'
        " <button>Send me a code</button></form>"
    )


async def _answer(request: Request) -> HTMLResponse:
    email = str((await request.form())["email"])
    return HTMLResponse(f"<!doctype html><title>Check your inbox</title><p>We sent a code to {escape(email)}.</p>")


SIGN_IN = Starlette(routes=[Route("/", _ask, methods=["GET"]), Route("/", _answer, methods=["POST"])])


def test_a_person_fills_a_form_by_its_label_submits_it_and_reads_the_next_page(browser: Browser) -> None:
    with serve_asgi(SIGN_IN) as base_url:
        browser.open(base_url + "/")
        browser.fill("E-mail address", "ada@example.com")
        browser.press("Send me a code")

        assert (browser.title, browser.text()) == ("Check your inbox", "We sent a code to ada@example.com.")
    assert [page.title for page in browser.pages] == ["Sign in", "Check your inbox"]
    assert all(page.png.startswith(PNG_SIGNATURE) for page in browser.pages)


def test_the_browser_cannot_reach_a_host_off_the_machine(browser: Browser) -> None:
    with pytest.raises(WebDriverException, match="ERR_NAME_NOT_RESOLVED"):
        browser.open("https://polar.sh/")


FAILING_BROWSER_TEST = """
def test_reads_a_word_the_page_does_not_have(browser):
    browser.open("data:text/html,<title>First page</title><p>one</p>")
    browser.open("data:text/html,<title>Second page</title><p>two</p>")
    assert browser.text() == "three"
"""


def test_a_failing_browser_test_leaves_a_picture_of_every_page_it_saw_and_says_where(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    # The suite's own conftest, in a session of its own, around a test that fails on purpose.
    (tmp_path / "conftest.py").write_text(Path(__file__).with_name("conftest.py").read_text())
    (tmp_path / "test_inner.py").write_text(FAILING_BROWSER_TEST)
    inner = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "test_inner.py"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(pytestconfig.rootpath)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    folder = tmp_path / "test-artifacts" / "test_inner.py_test_reads_a_word_the_page_does_not_have"
    pictures = sorted(folder.iterdir())

    assert inner.returncode == 1, inner.stdout + inner.stderr
    assert [picture.name for picture in pictures] == [
        "01-First-page.png",
        "02-Second-page.png",
        "03-now-Second-page.png",
    ]
    assert all(picture.read_bytes().startswith(PNG_SIGNATURE) for picture in pictures)
    assert "pages seen" in inner.stdout
    assert all(str(picture) in inner.stdout for picture in pictures)
