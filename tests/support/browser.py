"""A real headless browser for the tests that look at a page: Debian's Chromium, driven by Playwright.

Playwright cannot download its own browser builds here, so it launches the system's Chromium
(`/usr/bin/chromium`, Debian's `chromium` package, which `make test` installs as root with apt). Chromium's
background connections (updates, sync, Google's hosts) are switched off: the machines have no outside network.

`python -m tests.support.browser install` is `make test`'s step: it installs Chromium where apt can and says what
it did in one line (never fatal: the browser tests then skip, or fail where the machine could have had it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

NO_BROWSER = "no Chromium on this machine"
"""The start of a browser test's skip reason (tests/conftest.py tolerates it only where apt cannot install it)."""

LAUNCH_ARGS = (
    "--no-sandbox",  # the tests run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
)


ARTEFACTS = "KHO_TEST_ARTEFACTS"
"""Where page tests keep their screenshots (`.ci/run` sets it); unset, each test's own tmp_path."""


def artefact_dir(test: str, tmp_path: Path) -> Path:
    """The folder for one test's screenshots: `$KHO_TEST_ARTEFACTS/<test>/`, else `<tmp_path>/screenshots/`."""
    root = os.environ.get(ARTEFACTS)
    where = Path(root) / test if root else tmp_path / "screenshots"
    where.mkdir(parents=True, exist_ok=True)
    return where


def chromium_path() -> Path | None:
    """The system Chromium, or None (`KHO_CHROMIUM` names another binary)."""
    named = os.environ.get("KHO_CHROMIUM")
    for candidate in (named, shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


def can_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def install() -> str:
    """Install Debian's chromium where it is missing and apt can; one line saying what happened."""
    found = chromium_path()
    if found is not None:
        return f"chromium: {found}"
    if not can_install():
        return "chromium: not installed (as root run `apt-get install chromium`); the browser tests skip"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return f"chromium: `{' '.join(args)}` failed ({last[0][:160]}); the browser tests will fail"
    return f"chromium: installed {chromium_path()}"


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A Playwright Browser on the system Chromium (`offline_context` gives a context where only localhost answers)."""
    import pytest
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    if path is None:
        pytest.skip(f"{NO_BROWSER} (Debian's chromium package)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(path), args=list(LAUNCH_ARGS))
        try:
            yield browser
        finally:
            browser.close()


def offline_context(browser: Any, **options: Any) -> tuple[Any, list[str]]:
    """A browser context in which only localhost answers; returns it and the list of URLs it refused."""
    context = browser.new_context(**options)
    blocked: list[str] = []

    def route(route: Any) -> None:
        url = route.request.url
        host = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0].strip("[]")
        if url.startswith(("data:", "blob:", "file:", "about:")) or host in ("127.0.0.1", "localhost", "::1"):
            route.continue_()
        else:
            blocked.append(url)
            route.abort("internetdisconnected")

    context.route("**/*", route)
    return context, blocked


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        print("usage: python -m tests.support.browser install", file=sys.stderr)
        sys.exit(2)
    print(install())
