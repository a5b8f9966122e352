"""The map's page: the data of tagger.library.map inlined into one HTML file, with the page's
own script and style (tagger/library/map_assets/). Nothing is fetched when it opens: no
library from a CDN, no font, no icon; its Content-Security-Policy forbids any request but
the audio a person plays."""

from __future__ import annotations

import json
from importlib import resources


def _asset(name: str) -> str:
    return resources.files("tagger.library").joinpath("map_assets", name).read_text(encoding="utf-8")


def render(data: dict) -> bytes:
    """The page for ``data`` (``tagger.library.map.build_map``), UTF-8."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # inside <script>: no "<" at all (so no "</script>" or "<!--"); only strings hold one
    text = text.replace("<", "\\u003c")
    page = (_asset("map.html")
            .replace("/*STYLE*/", _asset("map.css"))
            .replace("/*SCRIPT*/", _asset("map.js").replace("</", "<\\/"))
            .replace("/*DATA*/", text, 1))
    # a file name that is not valid UTF-8 holds lone surrogates (surrogateescape): written as
    # JSON escapes, they stay one string that the page shows with a replacement character
    return page.encode("utf-8", errors="backslashreplace")
