"""`kho docs`: one local web server for everything kho documents — the dbt docs (`/dbt/`), the Great Expectations
Data Docs (`/quality/`) and the run report (`/report/`) — under one index page.

Static files only (Starlette's StaticFiles): no directory listing, nothing outside the three folders (a path with
`..`, encoded or not, or a symlink leading out is a 404), GET and HEAD only. Bound to localhost unless told
otherwise; every page it serves loads its CSS and scripts from the same server, so it works with no network.
"""

from __future__ import annotations

import html
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from kho.config import KhoConfig
from kho.errors import ConfigError
from kho.report import default_dir as report_dir


@dataclass(frozen=True)
class Section:
    """One documented thing: where it is served, the folder it is served from, its first page, and how to make it."""

    path: str
    title: str
    what: str
    folder: Path
    page: str
    made_by: str

    @property
    def exists(self) -> bool:
        return (self.folder / self.page).is_file()


def sections(config: KhoConfig) -> tuple[Section, ...]:
    return (
        Section("dbt", "dbt docs", "the shared datasets' models, columns, tests and lineage, with the warehouse's "
                "catalog", config.home / "dbt" / "docs", "index.html",
                "`kho build` (or the build_warehouse DAG) generates them with every build"),
        Section("quality", "Data Docs", "Great Expectations: every suite and the marts' validation results",
                config.gx_home / "data_docs" / "local_site", "index.html",
                "a build's mart audit (`kho build`, build_warehouse) or `kho quality validate` writes them"),
        Section("report", "Run report", "the nightly run in pictures: loads, quarantine, quality, coverage, "
                "vital events", report_dir(config), "index.html",
                "`kho report` writes it, and so does every build (`kho build`, build_warehouse) after publishing"),
    )


class Folder(StaticFiles):
    """A folder that may not exist yet (before the first build): a 404 naming the command that makes it, never
    Starlette's error for a missing directory; and never a symlink out of the folder (follow_symlink=False)."""

    def __init__(self, section: Section) -> None:
        super().__init__(directory=section.folder, html=True, check_dir=False, follow_symlink=False)
        self.section = section

    async def check_config(self) -> None:
        """Checked on every request instead (the folder may appear while the server runs)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if not self.section.folder.is_dir():
            return HTMLResponse(_missing(self.section), status_code=404)
        return await super().get_response(path, scope)


STYLE = """
body { font-family: "DejaVu Sans", Verdana, sans-serif; margin: 2rem auto; max-width: 52rem; color: #1d2430;
       padding: 0 1rem; }
li { margin: .8rem 0; } .missing { color: #8a4b00; } code { background: #f1f3f6; padding: 0 .25rem; }
"""


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>{body}</body></html>")


def _code(text: str) -> str:
    """Backquoted commands in a sentence as <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _missing(section: Section) -> str:
    return _page(section.title, f'<h1>{html.escape(section.title)}</h1><p class="missing">Not written yet: '
                                f"{_code(section.made_by)}.</p><p><a href=\"/\">kho docs</a></p>")


def index_page(config: KhoConfig) -> str:
    items = []
    for s in sections(config):
        if s.exists:
            items.append(f'<li><a href="/{s.path}/">{html.escape(s.title)}</a> — {html.escape(s.what)}</li>')
        else:
            items.append(f'<li class="missing" id="{s.path}-missing">{html.escape(s.title)}: none exists yet — '
                         f"{_code(s.made_by)}.</li>")
    return _page("kho docs", f"<h1>kho docs</h1><p>KHO_HOME {html.escape(str(config.home))}</p>"
                             f"<ul>{''.join(items)}</ul>")


def app(config: KhoConfig) -> Starlette:
    async def index(request: Request) -> Response:
        return HTMLResponse(index_page(config))

    async def slash(request: Request) -> Response:
        return RedirectResponse(f"{request.url.path}/", status_code=307)

    async def not_found(request: Request, exc: Exception) -> Response:
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        return HTMLResponse(_page("kho docs", f"<p>{code}: nothing here.</p><p><a href=\"/\">kho docs</a></p>"),
                            status_code=code)

    routes: list[Route | Mount] = [Route("/", index)]
    for section in sections(config):
        routes += [Route(f"/{section.path}", slash), Mount(f"/{section.path}", app=Folder(section))]
    return Starlette(routes=routes, exception_handlers={HTTPException: not_found})


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, or a one-line error naming the setting (a busy port, a host not of this machine)."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"kho docs: port {port} is not a TCP port (0-65535; 0 picks a free one)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"kho docs cannot listen on {host}:{port} ({exc.strerror}): choose another with --port "
                          "or KHO_DOCS_PORT") from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _server(config: KhoConfig) -> uvicorn.Server:

    return uvicorn.Server(uvicorn.Config(app(config), log_level="warning", access_log=False, lifespan="off",
                                         server_header=False))


def serve(config: KhoConfig, host: str, port: int, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted (Ctrl-C ends it quietly)."""
    sock = bind(host, port)
    server = _server(config)
    if on_ready is not None:
        on_ready(url(sock))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


@contextmanager
def serving(config: KhoConfig, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """The docs server in a thread for as long as the block runs (tests, `kho demo`); yields its URL."""
    sock = bind(host, port)
    server = _server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="kho-docs", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise ConfigError(f"kho docs on {url(sock)} stopped while starting")
            thread.join(0.05)
        yield url(sock)
    finally:
        server.should_exit = True
        thread.join()
        sock.close()
