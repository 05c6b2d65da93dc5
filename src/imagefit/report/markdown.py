"""Markdown building blocks shared by the run report, its sections and the comparison."""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from ..evaluate.cells import number

# ---- user-supplied text (class, run, study and file names) as literal markdown ----------------------
# Escaped everywhere: the characters that open code, emphasis, links, images, HTML, entities, strikethrough
# or a table cell, and `#` (a heading's closing sequence). Escaped only at the start, where they could open a
# block (a list item, a heading underline, an ordered list): `-`, `+`, `=` and `1.`/`1)`; in the middle of a
# name (`seed-cnn-seed1`) they mean nothing, and escaping them would make every raw report.md harder to read.
_ALWAYS = re.compile(r"([\\`*_\[\]<>|&~!#])")
_LEADING = re.compile(r"^(\s*)([-+=]|\d+[.)])")
# every character str.splitlines() breaks on: a name never spans two markdown lines
_LINE_BREAKS = re.compile("[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# CommonMark's backslash escape: a backslash before any ASCII punctuation character
ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")


def literal(name: Any) -> str:
    """`name` as markdown that a reader (CommonMark, GitHub, imagefit's HTML renderer) shows character for
    character: a class folder named `**big** [x](y)` is text, not bold or a link. Use it for every
    user-supplied name written into a markdown page; line breaks become spaces."""
    text = _LINE_BREAKS.sub(" ", str(name))

    def escape(m: re.Match) -> str:
        i, around = m.start(), text[m.start() - 1 : m.start() + 2]
        if m.group() == "_" and i > 0 and len(around) == 3 and (around[0] + around[2]).isascii() and \
                (around[0] + around[2]).isalnum():
            return "_"  # snake_case: an underscore between letters or digits never opens emphasis
        return "\\" + m.group()

    text = _ALWAYS.sub(escape, text)
    return _LEADING.sub(lambda m: m.group(1) + (m.group(2)[:-1] + "\\" + m.group(2)[-1]), text, count=1)


def plain(markdown_text: str) -> str:
    """The backslash escapes undone: a sentence built with `literal` names, for the console."""
    return ESCAPED.sub(r"\1", markdown_text)


def code(text: Any) -> str:
    """`text` in a code span; as escaped text when it holds a backtick (which a one-backtick span cannot)."""
    text = _LINE_BREAKS.sub(" ", str(text))
    return literal(text) if "`" in text or not text.strip() else f"`{text}`"


def link(label: Any, target: str) -> str:
    """A relative link with a literal label; the target percent-encoded, so a `)` or space in a folder name
    cannot end it early."""
    return f"[{literal(label)}]({quote(target, safe='/#')})"


def cell(text: Any) -> str:
    """A table cell: a `|` not already escaped (by `literal`) is escaped, so it cannot split the cell."""
    return re.sub(r"(?<!\\)((?:\\\\)*)\|", r"\1\\|", _LINE_BREAKS.sub(" ", str(text)))


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


# ---- numbers as a reader sees them ----------------------------------------------------------
def fixed(x: Any, digits: int = 4) -> str:
    x = number(x)
    return "–" if x is None else f"{x:.{digits}f}"


def integer(x: Any) -> str:
    x = number(x)
    return "–" if x is None else f"{int(x):,}"


def percent(x: Any) -> str:
    x = number(x)
    return "–" if x is None else f"{100 * x:.1f}%"


def duration(seconds: Any) -> str:
    s = number(seconds)
    if s is None:
        return "–"
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(round(s), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m} min {s} s" if h else f"{m} min {s} s"
