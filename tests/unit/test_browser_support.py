"""The browser harness the page tests stand on: Debian's Chromium through Playwright, and its offline mode."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.browser import chromium, offline_context


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "index.html").write_text(
        '<html><head><link rel="stylesheet" href="https://cdn.example.invalid/style.css"></head>'
        '<body><h1 id="t">kho</h1><script src="local.js"></script></body></html>', encoding="utf-8")
    (tmp_path / "local.js").write_text("document.getElementById('t').dataset.ran = 'yes';", encoding="utf-8")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_offline_context_serves_localhost_and_refuses_every_other_host(site: str) -> None:
    with chromium() as browser:
        context, blocked = offline_context(browser)
        page = context.new_page()
        page.goto(site)
        assert page.locator("#t").get_attribute("data-ran") == "yes"  # a local script ran
        assert blocked == ["https://cdn.example.invalid/style.css"]
        context.close()
