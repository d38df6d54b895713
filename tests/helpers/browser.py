"""Headless Chromium driven by Selenium, as a person would use it: open a page, fill fields by their
label, press a button, read the text. Every page it lands on is photographed, so a failing test can
leave the pictures behind (tests/realparts/conftest.py writes them to test-artifacts/).

Debian's `chromium` and `chromium-driver` only: no browser or driver is ever downloaded (this machine
reaches no browser CDN), hence the explicit driver path, which keeps Selenium Manager out of it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver import Chrome, ChromeOptions, ChromeService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

# Debian's paths; another machine names its own Chrome or Chromium and the matching driver.
CHROMIUM = Path(os.environ.get("POLAR_MCP_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("POLAR_MCP_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))

# Headless as root in a container, and nothing but the pages a test opens: without the networking
# flags Chromium calls Google's services at start-up (refused here, and not a test's business); the
# resolver rule makes any host name but localhost unresolvable, so a page cannot reach off the machine.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    "--window-size=1024,768",
)


def missing() -> str | None:
    """Why no browser can be started here, or None when one can."""
    absent = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    return f"no {' or '.join(absent)} (Chromium and its ChromeDriver)" if absent else None


@dataclass(frozen=True)
class Page:
    """A page as the browser showed it on arrival."""

    title: str
    png: bytes


@dataclass
class Browser:
    """One browser window with a fresh profile."""

    driver: Chrome
    timeout: float = 10.0
    pages: list[Page] = field(default_factory=list[Page])
    """Every page landed on, in order."""

    def open(self, url: str) -> None:
        self.driver.get(url)
        self._arrived()

    def fill(self, label: str, text: str) -> None:
        """Type `text` into the field labelled `label` (the label's whole text), replacing what was there."""
        field_ = self._field(label)
        field_.clear()
        field_.send_keys(text)

    def press(self, button: str) -> None:
        """Press the button showing `button` and wait for the page it leads to."""
        current = self.driver.find_element(By.TAG_NAME, "html")
        matches = [
            element
            for element in self.driver.find_elements(By.CSS_SELECTOR, "button, input[type=submit]")
            if (element.text or element.get_attribute("value") or "").strip() == button
        ]
        if len(matches) != 1:
            raise AssertionError(f"{len(matches)} buttons showing {button!r} on {self.driver.current_url}")
        matches[0].click()
        WebDriverWait(self.driver, self.timeout, poll_frequency=0.02).until(lambda _: _left(current))
        self._arrived()

    def text(self) -> str:
        """The page's text as a person reads it (hidden elements left out)."""
        return self.driver.find_element(By.TAG_NAME, "body").text

    @property
    def title(self) -> str:
        return self.driver.title

    def keep_pages(self, folder: Path) -> list[Path]:
        """Write every page landed on, then the page as it is now, to `folder` as NN-<title>.png."""
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        shots = list(self.pages)
        with contextlib.suppress(WebDriverException):  # a crashed browser still leaves the pages it showed
            shots.append(Page(f"now {self.driver.title}", self.driver.get_screenshot_as_png()))
        written: list[Path] = []
        for number, page in enumerate(shots, start=1):
            path = folder / f"{number:02d}-{_file_name(page.title)}.png"
            path.write_bytes(page.png)
            written.append(path)
        return written

    def _arrived(self) -> None:
        self.pages.append(Page(self.driver.title, self.driver.get_screenshot_as_png()))

    def _field(self, label: str) -> WebElement:
        labels = [
            element for element in self.driver.find_elements(By.TAG_NAME, "label") if element.text.strip() == label
        ]
        if len(labels) != 1:
            raise AssertionError(f"{len(labels)} fields labelled {label!r} on {self.driver.current_url}")
        target = labels[0].get_attribute("for")
        if target:
            return self.driver.find_element(By.ID, target)
        return labels[0].find_element(By.CSS_SELECTOR, "input, textarea, select")


@contextmanager
def chromium(profile: Path) -> Iterator[Browser]:
    """A headless Chromium with an empty profile in `profile` (a folder that need not exist yet)."""
    options = ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = Chrome(options=options, service=ChromeService(str(CHROMEDRIVER)))
    try:
        yield Browser(driver)
    finally:
        driver.quit()


def _left(page: WebElement) -> bool:
    """Whether the browser has left the document `page` (its root element) belongs to."""
    try:
        page.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as error:
        # Asked mid-navigation, ChromeDriver may say so in other words (seen with Chromium 156).
        if "does not belong to the document" in (error.msg or ""):
            return True
        raise
    return False


def _file_name(title: str) -> str:
    return re.sub(r"[^\w.-]+", "-", title).strip("-")[:60] or "untitled"
