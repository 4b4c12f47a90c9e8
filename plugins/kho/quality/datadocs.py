"""Data Docs that work with no network. GX's page templates load bootstrap, jQuery, Font Awesome, Vega and their
friends from CDNs, and its logo from S3: in an air-gapped data centre the pages were an unstyled list. kho ships
those files (`static/vendor/`, each package's exact npm files with its licence) and points the pages at them.

Through GX's own hooks, not by rewriting HTML afterwards: great_expectations.yml's site names `OfflineSiteBuilder`,
which builds with page views whose Jinja loader reads GX's templates with each CDN address replaced by the shipped
file's address relative to the page (`CDN`, one table: tests/unit/quality/test_datadocs.py fails when a GX upgrade
brings an address it lacks), and copies the shipped files into the site's `static/` beside GX's own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from great_expectations.render.renderer.site_builder import SiteBuilder
from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView
from jinja2 import BaseLoader, Environment, pass_context
from jinja2.runtime import Context

STATIC = Path(__file__).parent / "static"
"""Copied whole into the site's `static/` (GX's copy keys files from their path's `static` element)."""
VENDOR = STATIC / "vendor"
STAMP = ("static", "vendor", "kho-vendor.txt")
"""The site's record of which shipped files it holds, so a build copies them only when they changed."""

CDN: dict[str, str] = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap-4.3.1/css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap-4.3.1/js/bootstrap.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css":
        "bootstrap-table-1.19.1/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js":
        "bootstrap-table-1.19.1/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        "bootstrap-table-1.19.1/extensions/filter-control/bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        "bootstrap-table-1.19.0/extensions/filter-control/bootstrap-table-filter-control.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        "bootstrap-table-1.19.0/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker-1.9.0/css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker-1.9.0/js/bootstrap-datepicker.min.js",
    # The package's minified build of the same stylesheet (the page asks for the 880 kB unminified one).
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css":
        "bootstrap-dark-1.1.0/css/bootstrap-prefers-dark.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css":
        "fontawesome-free-6.6.0/css/all.min.css",
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery-3.7.1/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": "popper.js-1.12.9/umd/popper.min.js",
    # The newest of each major version the CDN would have served when these were shipped.
    "https://cdn.jsdelivr.net/npm/vega@5": "vega-5.33.1/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite-5.23.0/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed-6.29.0/vega-embed.min.js",
}
"""Each CDN address GX's templates load, and the shipped file (under static/vendor/) that replaces it."""

GX_ASSETS = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"
ASSET_REWRITES: dict[str, str] = {
    # top_navbar.j2 overrides the page's relative images folder with GX's S3 bucket: put the relative one back.
    f'"{GX_ASSETS}"': 'kho_static("images/")',
    # The dark theme's logo (data_docs_default_styles.css); GX ships no dark logo, the light one stands in.
    f"{GX_ASSETS}full_logo_dark.png": '{{ kho_static("images/logo-long.png") }}',
    # favicon.j2 climbs one folder too few from a validation result's page.
    '{{ static_images_dir + "favicon.ico" }}': '{{ kho_static("images/favicon.ico") }}',
}


def offline(source: str) -> str:
    """A GX template with every address it would fetch from the internet replaced by the shipped file's."""
    for remote, local in ASSET_REWRITES.items():
        source = source.replace(remote, local)
    for url in CDN:  # quoted whole: "…/vega@5" never matches inside "…/vega-lite@5"
        source = source.replace(f'"{url}"', f'"{{{{ kho_static("vendor/{CDN[url]}") }}}}"')
    return source


def static_prefix(renderer_type: str, suite_name: str) -> str:
    """The page's way up to the site root, as GX's top_navbar.j2 computes it: a validation result lives at
    validations/<suite name split at its dots>/<run name>/<run time>/<batch>.html, a suite at
    expectations/<suite name split at its dots>.html, the index at the root."""
    dots = suite_name.count(".")
    if "ValidationResults" in renderer_type or "ProfilingResults" in renderer_type:
        return "../" * (dots + 4)
    if "ExpectationSuite" in renderer_type:
        return "../" * (dots + 1)
    return "./"


@pass_context
def kho_static(context: Context, path: str) -> str:
    prefix = static_prefix(str(context.get("renderer_type") or ""), str(context.get("expectation_suite_name") or ""))
    return f"{prefix}static/{path}"


class OfflineTemplates(BaseLoader):
    """GX's template loader, with every template passed through `offline`."""

    def __init__(self, inner: BaseLoader) -> None:
        self.inner = inner

    def get_source(self, environment: Environment, template: str) -> tuple[str, str | None, Callable[[], bool] | None]:
        source, filename, uptodate = self.inner.get_source(environment, template)
        return offline(source), filename, uptodate

    def list_templates(self) -> list[str]:
        return self.inner.list_templates()


def _go_offline(env: Environment) -> None:
    assert env.loader is not None
    env.loader = OfflineTemplates(env.loader)
    env.globals["kho_static"] = kho_static


class OfflinePageView(DefaultJinjaPageView):
    """GX's page view (suites, validation results) on the shipped files."""

    def __init__(self, custom_styles_directory: str | None = None, custom_views_directory: str | None = None) -> None:
        super().__init__(custom_styles_directory, custom_views_directory)
        _go_offline(self.env)


class OfflineIndexPageView(DefaultJinjaIndexPageView):
    """GX's site index view on the shipped files."""

    def __init__(self, custom_styles_directory: str | None = None, custom_views_directory: str | None = None) -> None:
        super().__init__(custom_styles_directory, custom_views_directory)
        _go_offline(self.env)


def _view(name: str) -> dict[str, str]:
    return {"module_name": __name__, "class_name": name}


@cache
def vendor_stamp() -> str:
    """Which shipped files there are (names and bytes): the site holds them if its stamp says the same."""
    digest = hashlib.sha256()
    for path in sorted(p for p in VENDOR.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(VENDOR).as_posix()}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


class OfflineSiteBuilder(SiteBuilder):
    """GX's SiteBuilder, rendering with the offline views and shipping the files they point at."""

    def __init__(self, data_context: Any, store_backend: dict[str, Any], site_name: str | None = None,
                 site_index_builder: dict[str, Any] | None = None,
                 site_section_builders: dict[str, Any] | None = None, **kwargs: Any) -> None:
        sections = {name: {"view": _view("OfflinePageView")} for name in ("expectations", "validations", "profiling")}
        for name, given in (site_section_builders or {}).items():
            sections[name] = {**sections.get(name, {}), **given} if isinstance(given, dict) else given
        index = {"class_name": "DefaultSiteIndexBuilder", "view": _view("OfflineIndexPageView"),
                 **(site_index_builder or {})}
        super().__init__(data_context, store_backend, site_name=site_name, site_index_builder=index,
                         site_section_builders=sections, **kwargs)

    def build(self, resource_identifiers: Any = None, build_index: bool = True) -> Any:
        built = super().build(resource_identifiers=resource_identifiers, build_index=build_index)
        backend = self.target_store.store_backends["static_assets"]
        stamp = vendor_stamp()
        if not backend.has_key(STAMP) or backend.get(STAMP) != stamp:
            self.target_store.copy_static_assets(str(STATIC))
            backend.set(STAMP, stamp, content_type="text/plain")
        return built
