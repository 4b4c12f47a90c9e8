"""Open a page served by `kho docs` in headless Chromium with the network off, and say what it needed and got."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.support.browser import offline_context


def shows(text: str) -> str:
    """A `ready` function: the page's text (hidden parts too: a collapsed tree) holds `text`."""
    return f"() => document.body !== null && document.body.textContent.includes({text!r})"


STYLED = """() => {
  const probe = document.createElement('div');
  probe.className = 'd-flex text-right';  // two bootstrap utilities: display flex, text-align right
  document.body.appendChild(probe);
  const style = getComputedStyle(probe);
  const styled = style.display === 'flex' && style.textAlign === 'right';
  probe.remove();
  return styled;
}"""


@dataclass(frozen=True)
class Look:
    blocked: list[str]
    """Requests to any host but localhost (refused)."""
    failed: list[str]
    """Requests to localhost answered with an error, or not at all."""
    loaded: list[str]
    styled: bool
    """Bootstrap's CSS applies (a computed style only its classes give)."""
    scripts: dict[str, bool]


def look(browser: Any, url: str, *, ready: str | None = None, scripts: tuple[str, ...] = (),
         styled: str = STYLED) -> Look:
    """Load `url` offline; `ready` a JavaScript function true once the page drew what it should (waited for),
    `scripts` global names (e.g. jQuery) to report on, `styled` a function saying whether its styles apply
    (default: bootstrap's)."""
    context, blocked = offline_context(browser)
    failed: list[str] = []
    loaded: list[str] = []
    page = context.new_page()
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: (failed if r.status >= 400 else loaded).append(
        f"{r.url} ({r.status})" if r.status >= 400 else r.url))
    try:
        page.goto(url, wait_until="load")
        if ready:
            page.wait_for_function(ready)
        applied = bool(page.evaluate(styled))
        defined = {name: bool(page.evaluate(f"() => typeof window[{name!r}] !== 'undefined'")) for name in scripts}
    finally:
        context.close()
    refused = set(blocked)
    root_icon = url.split("://", 1)[0] + "://" + url.split("://", 1)[1].split("/", 1)[0] + "/favicon.ico"
    failed = [f for f in failed if f.split(" ", 1)[0] not in refused and not f.startswith(root_icon + " ")]
    return Look(blocked=list(blocked), failed=failed,
                loaded=loaded, styled=applied, scripts=defined)
