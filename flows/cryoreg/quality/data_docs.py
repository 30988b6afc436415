"""The Data Docs site made fit for a hospital network: an index of the night's suites, and
every page rewritten to render offline (no CDN stylesheets, scripts or images)."""

from __future__ import annotations

import html
import re
from functools import cache
from html.parser import HTMLParser
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

import jinja2

from cryoreg.quality import checks as quality
from cryoreg.quality.checks import CheckResult

if TYPE_CHECKING:
    from cryoreg.quality.expectations import Suite

TEMPLATES = files("cryoreg.quality") / "templates"


@cache
def _css() -> str:
    """The stylesheet that stands in for GE's CDN ones (Bootstrap, Font Awesome)."""
    return (TEMPLATES / "data_docs.css").read_text(encoding="utf-8")


def _link(site: Path, pattern: str) -> str | None:
    found = sorted(site.glob(pattern))
    return found[-1].relative_to(site).as_posix() if found else None


def _suite_status(mine: list[CheckResult], exceptions: dict) -> str:
    count = {s: sum(r.status == s for r in mine) for s in quality.STATUSES}
    fatal = any(
        r.status in ("failed", "error")
        and r.severity == "fatal"
        and not quality.active_exception(exceptions, r.check_name)
        for r in mine
    )
    if count["not_applicable"] == len(mine):
        return "not applicable"
    if fatal:
        return "failed"
    return "warned" if count["failed"] + count["error"] else "passed"


def _kind(r: CheckResult, exceptions: dict) -> str:
    known = quality.active_exception(exceptions, r.check_name)
    return quality.kind(r.status, "warn" if known else r.severity)


def _problem(r: CheckResult, exceptions: dict) -> dict:
    known = quality.active_exception(exceptions, r.check_name)
    return {
        "check": r.check_name,
        "status": _kind(r, exceptions),
        "severity": f"warn (known exception: {known.reason})" if known else r.severity,
        "category": r.category,
        "failing": "" if r.failing_rows is None else f"{r.failing_rows} of {r.checked_rows}",
        "threshold": "" if r.threshold is None else f"{r.threshold:.1%}",
        "note": str(r.details.get("reason") or r.details.get("message") or ""),
    }


def index_page(
    site: Path, suites: list[Suite], results: list[CheckResult], run_id: str, exceptions: dict
) -> str:
    """A static index (GE's own index draws its tables with CDN scripts)."""
    rows, problems = [], []
    for suite in suites:
        mine = [r for r in results if r.target == suite.target]
        path = suite.target.replace(".", "/")
        links = (
            (_link(site, f"validations/{path}/**/*.html"), "result"),
            (_link(site, f"expectations/{path}.html"), "suite"),
        )
        rows.append(
            {
                "target": suite.target,
                "status": _suite_status(mine, exceptions),
                "checks": len(mine),
                **{
                    k.replace(" ", "_"): sum(_kind(r, exceptions) == k for r in mine)
                    for k in quality.KINDS
                },
                "links": [(href, label) for href, label in links if href],
            }
        )
        problems += [_problem(r, exceptions) for r in mine if r.status != "passed"]
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("cryoreg.quality", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template("index.html").render(
        css=_css(), run_id=run_id, suites=rows, problems=problems
    )


# ---------------------------------------------------------------- offline Data Docs

_REMOTE = r"""(?:https?:)?//[^"'\s>)]+"""
_REMOTE_CSS_URL = re.compile(rf"""url\(\s*["']?{_REMOTE}["']?\s*\)""", re.I)
_URL_TEXT = re.compile(r"https?://[^\s\"'<>)]+", re.I)


def _is_remote(url: str | None) -> bool:
    return bool(url) and re.match(r"(?:https?:)?//", url.strip(), re.I) is not None


def _is_missing(page: Path, url: str | None) -> bool:
    """A relative asset address that points at no file (GE's validation pages climb one
    folder too few to their favicon)."""
    if not url or re.match(r"[a-z][a-z0-9+.-]*:|#", url, re.I):
        return False
    path = unquote(url.split("#")[0].split("?")[0])
    return bool(path) and not (page.parent / path).exists()


def _offline_css(css: str) -> str:
    """Remote url(...) in a stylesheet become none; no other address is left in it."""
    return _URL_TEXT.sub("", _REMOTE_CSS_URL.sub("none", css))


# GE's "Failed Only" filter hides, with a script, the column sections whose checks all passed
# and their links in the table of contents; data_docs.css hides the sections without it, and
# each page gets the rule for its own links (which sections those are is known only here).
_ALL_PASSED_SECTION = "hide-succeeded-validations-column-section-target-child"
_FAILED_ONLY = "body:has(#option2:checked)"


class _Offline(HTMLParser):
    """Re-emits a page without scripts, forms, footers, remote or missing assets and remote
    links; an image left out shows its alt text (GE's logo: the top bar's link home).

    Tags that need no change are written back as they came; the others are re-serialised.
    """

    DROPPED = {"script", "form", "footer"}  # with everything inside them
    ASSETS = {"link": "href", "img": "src", "iframe": "src"}  # dropped when remote
    URL_ATTRS = {"href", "src", "action", "srcset", "poster"}

    def __init__(self, page: Path) -> None:
        super().__init__(convert_charrefs=False)
        self.page = page
        self.out: list[str] = []
        self.dropping: str | None = None  # the tag being dropped, and how deep we are in it
        self.depth = 0
        self.in_style = False
        self.section: str | None = None  # the id of the ge-section being written
        self.all_passed: list[str] = []  # sections whose checks all passed

    def rewrite(self, page: str) -> str:
        self.feed(page)
        self.close()
        return "".join(self.out)

    def _tag(self, tag: str, attrs: list[tuple[str, str | None]], closed: bool) -> str | None:
        """The tag as it should be written, or None to leave it out."""
        if tag in self.ASSETS:
            url = dict(attrs).get(self.ASSETS[tag])
            if _is_remote(url) or _is_missing(self.page, url):
                alt = dict(attrs).get("alt") if tag == "img" else None
                return f'<span class="ge-alt">{html.escape(alt)}</span>' if alt else None
        kept = [
            (name, _offline_css(value) if name == "style" else _URL_TEXT.sub("", value))
            if value
            else (name, value)
            for name, value in attrs
            if not (name in self.URL_ATTRS and _is_remote(value))
            and not name.startswith("on")  # handlers of scripts that are gone
        ]
        if kept == attrs:
            return self.get_starttag_text()
        text = "".join(
            f" {name}" if value is None else f' {name}="{html.escape(value)}"'
            for name, value in kept
        )
        return f"<{tag}{text}{' /' if closed else ''}>"

    def _start(self, tag: str, attrs: list, closed: bool) -> None:
        if self.dropping:
            self.depth += tag == self.dropping and not closed
            return
        if tag in self.DROPPED and not closed:
            self.dropping, self.depth = tag, 1
            return
        classes = (dict(attrs).get("class") or "").split()
        if "ge-section" in classes:
            self.section = dict(attrs).get("id")
        if _ALL_PASSED_SECTION in classes and self.section:
            self.all_passed.append(self.section)
        written = self._tag(tag, attrs, closed)
        if written is not None:
            self.out.append(written)
        self.in_style = tag == "style" and not closed

    def handle_starttag(self, tag, attrs):
        self._start(tag, attrs, closed=False)

    def handle_startendtag(self, tag, attrs):
        self._start(tag, attrs, closed=True)

    def handle_endtag(self, tag):
        if self.dropping:
            self.depth -= tag == self.dropping
            if not self.depth:
                self.dropping = None
            return
        if tag == "head":
            self.out.append(f"<style>{_css()}</style>")
        if tag == "body" and self.all_passed:
            links = ", ".join(f'{_FAILED_ONLY} a[href="#{s}"]' for s in self.all_passed)
            self.out.append(f"<style>{links}{{display:none}}</style>")
        self.in_style = False
        self.out.append(f"</{tag}>")

    def handle_data(self, data):
        if not self.dropping:
            self.out.append(_offline_css(data) if self.in_style else _URL_TEXT.sub("", data))

    def handle_entityref(self, name):
        if not self.dropping:
            self.out.append(f"&{name};")

    def handle_charref(self, name):
        if not self.dropping:
            self.out.append(f"&#{name};")

    def handle_decl(self, decl):
        self.out.append(f"<!{decl}>")

    # comments and processing instructions are left out: they show nothing, may hold addresses


def make_offline(folder: Path) -> None:
    """Strip CDN assets, scripts, dead asset links and remote links from Data Docs; add a small
    inline stylesheet.

    Pages become static HTML (no script needed): collapsed sections are shown open, the top bar
    and the table of contents shown from 768 px on as Bootstrap would, and the validation
    filter works with CSS alone.
    """
    for page in folder.rglob("*.html"):
        text = _Offline(page).rewrite(page.read_text(encoding="utf-8"))
        page.write_text(text, encoding="utf-8")
    for sheet in folder.rglob("*.css"):
        sheet.write_text(_offline_css(sheet.read_text(encoding="utf-8")), encoding="utf-8")


def remote_references(folder: Path) -> list[str]:
    """Every http(s) or protocol-relative asset or link left in Data Docs pages and styles."""
    found = []
    pattern = re.compile(r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}""", re.I)
    for path in [*folder.rglob("*.html"), *folder.rglob("*.css")]:
        text = path.read_text(encoding="utf-8")
        found += [f"{path.relative_to(folder)}: {m}" for m in pattern.findall(text)]
    return found
