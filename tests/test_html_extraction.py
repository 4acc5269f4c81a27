"""HTML extraction measured on real pages: Sphinx builds, in the test, the reference pages of stdlib
modules (autodoc) and article pages from the language reference's topics, in two themes; ingest must
keep the text and drop the chrome (permalink marks, navigation, sidebars, footers)."""

from __future__ import annotations

import importlib
import inspect
import re
import textwrap
from pathlib import Path

import pytest

from tasks.ingest.formats import parse_html

sphinx_build = pytest.importorskip("sphinx.cmd.build", reason="sphinx is a dev dependency: `pip install -e .[dev]`")

MODULES = ("textwrap", "queue", "json", "fractions", "shlex", "heapq", "bisect", "string")
TOPICS = ("assert", "break", "continue", "pass", "return", "while", "with", "raise", "global", "del")
CHROME = (
    "Navigation",
    "Quick search",
    "Created using",
    "Powered by",
    "Table of Contents",
    "Previous topic",
    "Next topic",
    "This Page",
    "Show Source",
    "modules |",
    "index",
)
_WORD = re.compile(r"[A-Za-z]{3,}")


def _rst_paragraphs(text: str) -> str:
    """The topic's plain text as reST: prose paragraphs as paragraphs, indented blocks as literal blocks."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        if block.startswith(" "):
            out.append("::\n\n" + textwrap.indent(textwrap.dedent(block), "   "))
        else:
            out.append(re.sub(r"([\\\\*`|_])", r"\\\\\\1", " ".join(block.split())))
    return "\n\n".join(out)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """{page: (html file, the text it was built from)} for both themes."""
    from pydoc_data.topics import topics

    root = tmp_path_factory.mktemp("sphinx")
    sources: dict[str, str] = {}
    (root / "src").mkdir()
    for name in MODULES:
        module = importlib.import_module(name)
        (root / "src" / f"{name}.rst").write_text(
            f"{name}\n{'=' * len(name)}\n\n.. automodule:: {name}\n   :members:\n"
        )
        members = [
            inspect.cleandoc(obj.__doc__ or "")
            for obj in (getattr(module, m) for m in getattr(module, "__all__", []))
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == name
        ]
        sources[name] = "\n".join([inspect.getdoc(module) or "", *members])
    for topic in TOPICS:
        (root / "src" / f"topic-{topic}.rst").write_text(
            f"{topic}\n{'=' * len(topic)}\n\n{_rst_paragraphs(topics[topic])}\n"
        )
        sources[f"topic-{topic}"] = topics[topic]
    pages = "\n".join(f"   {p}" for p in sources)
    (root / "src" / "index.rst").write_text(f"Reference\n=========\n\n.. toctree::\n\n{pages}\n")
    built: dict[str, tuple[Path, str]] = {}
    for theme in ("alabaster", "classic"):
        (root / "src" / "conf.py").write_text(f"extensions = ['sphinx.ext.autodoc']\nhtml_theme = '{theme}'\n")
        assert sphinx_build.build_main(["-q", "-b", "html", str(root / "src"), str(root / theme)]) == 0
        built |= {f"{theme}/{page}": (root / theme / f"{page}.html", text) for page, text in sources.items()}
    return built


def test_reference_and_article_pages_keep_their_text_and_lose_their_chrome(
    site: dict[str, tuple[Path, str]],
) -> None:
    marks = 0
    for page, (html_file, source) in site.items():
        html = html_file.read_text()
        marks += html.count("¶")
        record = next(parse_html("site", str(html_file), html))
        assert record.text is not None, (page, record.reason)
        assert "¶" not in record.text, page
        lines = {line.strip() for line in record.text.splitlines()}
        assert not [c for c in CHROME if c in lines], (page, [c for c in CHROME if c in lines])
        wanted = set(_WORD.findall(source))
        got = set(_WORD.findall(record.text))
        recall = len(wanted & got) / len(wanted)
        assert recall >= 0.9, (page, recall, sorted(wanted - got)[:20])
        if "/topic-" in page:  # an article's whole text is known: every other word would be chrome
            extra = len(got - wanted - {"topic"}) / len(got)
            assert extra <= 0.05, (page, extra, sorted(got - wanted)[:20])
    assert marks >= 100  # the pages really carry permalink marks for the extraction to remove
