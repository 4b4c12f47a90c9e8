"""`kho docs` and the offline Data Docs: a real uvicorn server on a real socket, GX's own site builder rendering the
project's suites, and headless Chromium with the network off."""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from kho.config import KhoConfig
from kho.docs import serving
from kho.errors import ConfigError
from kho.quality import datadocs
from tests.support.browser import chromium
from tests.support.offline_page import look

SECRET = "not-for-the-web"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A KHO_HOME with a secret beside the served folders and one outside it, and a symlink to each in the site."""
    home = tmp_path / "home"
    (home / "secrets").mkdir(parents=True)
    (home / "secrets" / "pg_password").write_text(SECRET, encoding="utf-8")
    (tmp_path / "outside.txt").write_text(SECRET, encoding="utf-8")
    return home


def config_of(home: Path) -> KhoConfig:
    return KhoConfig.from_env({"KHO_HOME": str(home), "KHO_PG_PASSWORD": "not-used"})


def get(url: str, path: str, method: str = "GET") -> tuple[int, str]:
    """Send `path` byte for byte (http.client normalises nothing: `..` and `%2e%2e` reach the server as written)."""
    host, port = url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path)
        answer = conn.getresponse()
        return answer.status, answer.read().decode("utf-8", "replace")
    finally:
        conn.close()


@pytest.fixture
def gx_site(home: Path) -> Path:
    """The project's Data Docs as GX's site builder writes them (the suites: no warehouse needed)."""
    from kho.quality.runner import gx_context

    config = config_of(home)
    gx_context(config).build_data_docs()
    site = config.gx_home / "data_docs" / "local_site"
    assert (site / "index.html").is_file()
    return site


@pytest.fixture
def served(home: Path) -> Iterator[str]:
    with serving(config_of(home)) as url:
        yield url


def test_the_index_says_what_is_not_written_yet_and_which_command_writes_it(served: str) -> None:
    status, body = get(served, "/")
    assert status == 200
    for section, command in (("dbt-missing", "kho build"), ("quality-missing", "kho build"),
                             ("report-missing", "kho report")):
        line = re.search(rf'id="{section}">(.*?)</li>', body)
        assert line and "none exists yet" in line.group(1) and f"<code>{command}</code>" in line.group(1)
    status, body = get(served, "/report/")
    assert status == 404 and "Not written yet" in body


def test_the_index_links_each_folder_that_exists(home: Path, served: str) -> None:
    (home / "report").mkdir()
    (home / "report" / "index.html").write_text("<h1>report</h1>", encoding="utf-8")
    status, body = get(served, "/")
    assert status == 200 and '<a href="/report/">Run report</a>' in body and 'id="report-missing"' not in body
    assert get(served, "/report/") == (200, "<h1>report</h1>")
    assert get(served, "/report")[0] == 307


@pytest.mark.parametrize("path", [
    "/quality/../../../secrets/pg_password",
    "/quality/%2e%2e/%2e%2e/%2e%2e/secrets/pg_password",
    "/quality/%2E%2E%2F%2E%2E%2F%2E%2E%2Fsecrets%2Fpg_password",
    "/quality/..%2f..%2f..%2fsecrets%2fpg_password",
    "/dbt/..%5c..%5c..%5csecrets%5cpg_password",
    "/report/....//....//secrets/pg_password",
    "//secrets/pg_password",
    "/quality//etc/passwd",
    "/quality/linked-out/outside.txt",
    "/quality/secret-link",
])
def test_nothing_outside_the_served_folders_is_served(home: Path, gx_site: Path, served: str, path: str) -> None:
    (gx_site / "linked-out").symlink_to(home.parent, target_is_directory=True)
    (gx_site / "secret-link").symlink_to(home / "secrets" / "pg_password")
    status, body = get(served, path)
    assert status == 404 and SECRET not in body


def test_a_folder_is_never_listed(gx_site: Path, served: str) -> None:
    for path in ("/quality/static/", "/quality/static/vendor/", "/quality/expectations/"):
        status, body = get(served, path)
        assert status == 404 and "jquery" not in body and "golden_citizens" not in body, path


def test_only_get_and_head_are_answered(gx_site: Path, served: str) -> None:
    assert get(served, "/quality/index.html", "HEAD")[0] == 200
    assert get(served, "/quality/index.html", "POST")[0] == 405
    assert get(served, "/quality/index.html", "DELETE")[0] == 405


def test_a_busy_port_is_refused_in_one_line_naming_the_setting(home: Path, served: str) -> None:
    port = int(served.rstrip("/").rsplit(":", 1)[1])
    with pytest.raises(ConfigError, match=r"^kho docs cannot listen on 127\.0\.0\.1:\d+ .*KHO_DOCS_PORT$"), \
            serving(config_of(home), port=port):
        pass


def test_the_port_comes_from_kho_docs_port(tmp_path: Path) -> None:
    assert KhoConfig.from_env({"KHO_HOME": str(tmp_path)}).docs_port == 58090
    assert KhoConfig.from_env({"KHO_HOME": str(tmp_path), "KHO_DOCS_PORT": "58123"}).docs_port == 58123
    with pytest.raises(ConfigError, match="KHO_DOCS_PORT"):
        KhoConfig.from_env({"KHO_HOME": str(tmp_path), "KHO_DOCS_PORT": "docs"})


# --- the offline Data Docs ----------------------------------------------------------------------------------------

FETCHED = re.compile(r"""(?:<(?:link|script|img)\b[^>]*?\b(?:src|href)\s*=\s*|url\(\s*)["']?(https?://[^"')\s>]+)""")


def gx_templates() -> dict[str, str]:
    from great_expectations.render import view

    folder = Path(view.__file__).parent
    found = {p.name: p.read_text(encoding="utf-8") for p in (folder / "templates").glob("*.j2")}
    found.update({p.name: p.read_text(encoding="utf-8") for p in (folder / "static" / "styles").glob("*.css")})
    return found


def test_every_address_gx_s_templates_would_fetch_from_the_internet_is_replaced_by_a_shipped_file() -> None:
    """A GX upgrade that brings a new CDN address fails here, naming it: add its files and a CDN entry."""
    templates = gx_templates()
    before = {url for source in templates.values() for url in FETCHED.findall(source)}
    assert len(before) >= 16, "GX's templates load fewer remote files than they did: check FETCHED still finds them"
    left = {name: FETCHED.findall(datadocs.offline(source)) for name, source in templates.items()}
    assert {name: urls for name, urls in left.items() if urls} == {}


def test_every_shipped_file_exists_and_each_package_keeps_its_licence() -> None:
    missing = [local for local in datadocs.CDN.values() if not (datadocs.VENDOR / local).is_file()]
    assert not missing
    packages = {local.split("/", 1)[0] for local in datadocs.CDN.values()}
    assert {p.name for p in datadocs.VENDOR.iterdir() if p.is_dir()} == packages
    assert all((datadocs.VENDOR / p / "LICENSE.txt").is_file() for p in packages)


def test_the_site_holds_the_shipped_files_and_its_pages_point_at_them(gx_site: Path) -> None:
    page = gx_site / "expectations" / "mart_population" / "golden_citizens.html"
    html = page.read_text(encoding="utf-8")
    assert FETCHED.findall(html) == []
    for reference in re.findall(r'(?:src|href)="(\.\./\.\./static/[^"?]+)', html):
        assert (page.parent / reference).resolve().is_file(), reference
    assert (gx_site / "static" / "vendor" / "jquery-3.7.1" / "LICENSE.txt").is_file()


def test_data_docs_render_styled_with_the_network_off(gx_site: Path, served: str) -> None:
    with chromium() as browser:
        for path in ("/quality/", "/quality/expectations/mart_population/golden_citizens.html"):
            seen = look(browser, served.rstrip("/") + path, scripts=("jQuery", "vegaEmbed", "bootstrap"))
            assert seen.blocked == [], path
            assert seen.failed == [], path
            assert seen.styled, f"{path}: bootstrap's styles do not apply"
            assert all(seen.scripts.values()), f"{path}: {seen.scripts}"
            assert any(u.endswith("/fontawesome-free-6.6.0/css/all.min.css") for u in seen.loaded), path


def test_kho_docs_refuses_a_port_that_is_no_port_in_one_line(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from kho.cli import main

    monkeypatch.setenv("KHO_HOME", str(home))
    assert main(["docs", "--port", "70000"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "port 70000 is not a TCP port" in err and "Traceback" not in err
