"""Self-contained HTML from imagefit's own markdown pages (report.md, comparison.md, data_audit.md).

Read by markdown-it-py, the CommonMark reader the tests use as the reference, rather than a parser of our own, so
the HTML cannot read a page differently from other markdown viewers. Raw HTML is off (a name's `<b>` is text) and
GitHub's tables are on. imagefit adds only what a report page needs: a link stays a link only when relative (a class
or run name is user input, so a `javascript:`, `http:`, `//host` or `/absolute` target shows as the text it was
written as), and a local `.md` page is linked as its `.html` twin; an image is embedded as a data URI only from inside
the page's folder (anything else is named, never loaded), and alone in a paragraph it is a figure; tables scroll in a
frame, mostly-numeric columns are right-aligned and a "change" column is colored. No script, nothing fetched.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from urllib.parse import unquote

from markdown_it import MarkdownIt
from markdown_it.token import Token

from .. import atomic

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml", ".gif": "image/gif"}

STYLE = """
:root { --ink: #1d2330; --muted: #5b6475; --line: #dfe3ea; --band: #f5f7fa; --accent: #2f6fde;
        --good: #1a7f37; --bad: #b42318; --note: #fff8e6; --note-line: #f0c36d; }
* { box-sizing: border-box; }
body { margin: 0; background: #ffffff; color: var(--ink);
       font: 15px/1.55 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "DejaVu Sans", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 36px 60px; }
h1 { font-size: 26px; line-height: 1.25; margin: 6px 0 18px; padding-bottom: 12px; border-bottom: 3px solid var(--accent); }
h2 { font-size: 19px; margin: 34px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 8px; }
p, li { max-width: 78ch; }
p { margin: 10px 0; }
ul { padding-left: 22px; }
li { margin: 3px 0; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code { font: 13px/1.4 "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace;
       background: var(--band); border: 1px solid var(--line); border-radius: 4px; padding: 1px 4px; }
blockquote { margin: 14px 0; padding: 10px 16px; background: var(--note); border-left: 4px solid var(--note-line);
             border-radius: 0 6px 6px 0; }
blockquote p { margin: 4px 0; }
.table-wrap { display: inline-block; max-width: 100%; overflow-x: auto; vertical-align: top; margin: 12px 0 18px;
              border: 1px solid var(--line); border-radius: 8px; }
table { border-collapse: collapse; font-size: 14px; }
th, td { padding: 7px 14px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--band); font-weight: 600; white-space: nowrap; }
tbody tr:nth-child(even) td { background: #fafbfc; }
tbody tr:last-child td { border-bottom: none; }
tbody tr:hover td { background: #eef3fd; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td strong { color: var(--good); }
td:first-child { font-weight: 500; white-space: nowrap; }
.up { color: var(--good); }
.down { color: var(--bad); }
figure { margin: 14px 0 22px; }
figure img { display: block; max-width: 100%; max-height: 880px; width: auto; height: auto; border: 1px solid var(--line); border-radius: 8px; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; }
.missing { color: var(--bad); }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 10px; }
"""

_NUM = r"[+\-−]?(?:\d[\d,]*)?\.?\d+"
_NUMERIC = re.compile(
    rf"{_NUM}%?(?: ± {_NUM}%?)?(?: \({_NUM}\))?"          # 0.9123, 1,234, 55.0%, 0.91 ± 0.01, 0.93 (+0.02)
    rf"|(?:\d+ h )?(?:\d+ min )?{_NUM} s"                  # durations: 12.5 s, 1 min 16 s
    rf"|{_NUM} of {_NUM}"                                   # 6 of 10
)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:")


def _relative(url: str) -> bool:
    """markdown-it's link check, for links and images (entities decoded): no scheme, no //host, no absolute path."""
    return not _SCHEME.match(url) and not url.startswith(("/", "\\"))


def _image(self, tokens, idx, options, env) -> str:
    """Only a file inside the page's folder is embedded (`..` out of it or a link out of it is refused)."""
    folder, src = env["base_dir"], unquote(tokens[idx].attrGet("src"))
    path, mime = folder / src, MIME.get(Path(src).suffix.lower())
    try:
        found = mime is not None and path.resolve().is_relative_to(folder.resolve()) and path.is_file()
    except OSError:
        found = False
    if not found:  # never a network fetch: a missing, remote or outside image is named, not loaded
        return f'<span class="missing">[image not found: {html.escape(src)}]</span>'
    uri = f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    alt = self.renderInlineAsText(tokens[idx].children, options, env)
    return f'<img src="{uri}" alt="{html.escape(alt)}" loading="eager">'


def _link_open(self, tokens, idx, options, env) -> str:
    """Only relative links get here (`_relative` made plain text of the others); a local page's `.md` -> `.html`."""
    tokens[idx].attrSet("href", re.sub(r"\.md(?=$|#)", ".html", tokens[idx].attrGet("href")))
    return self.renderToken(tokens, idx, options, env)


def _plain(inline: Token) -> str:
    return "".join(c.content for c in inline.children or [] if c.type in ("text", "code_inline")).strip()


def _columns(rows: list[list[tuple[Token, Token]]]) -> None:
    """A mostly-numeric column is right-aligned, words included (a metrics-by-run table has a text row or two);
    a column of words stays left-aligned. Only a "change" column is colored: + up, - down."""
    for col, (th, head) in enumerate(rows[0]):
        cells = [(th, head, "")] + [(t, cell, _plain(cell)) for t, cell in (row[col] for row in rows[1:])]
        filled = [text for _, _, text in cells[1:] if text not in ("–", "-", "")]
        numeric = bool(filled) and sum(bool(_NUMERIC.fullmatch(text)) for text in filled) > len(filled) / 2
        for t, cell, text in cells:
            if numeric:
                t.attrSet("class", "num")
            if _plain(head).lower() == "change" and re.fullmatch(r"[+\-−]\d*\.?\d+", text) and re.search("[1-9]", text):
                cell.children = [Token("span_open", "span", 1, attrs={"class": "up" if text[0] == "+" else "down"}),
                                 *cell.children, Token("span_close", "span", -1)]


def _dress(state) -> None:
    """Core rule: an image alone in a paragraph is a figure; each table's columns get their alignment and colors."""
    tokens, rows = state.tokens, []
    for i, t in enumerate(tokens):
        if t.type == "paragraph_open" and [c.type for c in tokens[i + 1].children or []] == ["image"]:
            t.tag = tokens[i + 2].tag = "figure"
        elif t.type == "tr_open":
            rows.append([])
        elif t.type in ("th_open", "td_open"):
            rows[-1].append((t, tokens[i + 1]))
        elif t.type == "table_close":
            _columns(rows)
            rows = []


_MD = MarkdownIt("commonmark", {"html": False}).enable("table")
_MD.validateLink = _relative
_MD.core.ruler.push("imagefit", _dress)
_MD.add_render_rule("image", _image)
_MD.add_render_rule("link_open", _link_open)
_MD.add_render_rule("table_open", lambda self, *_: '<div class="table-wrap"><table>\n')
_MD.add_render_rule("table_close", lambda self, *_: "</table></div>\n")


def inline(text: str, base_dir: Path) -> str:
    """One line of markdown as HTML, without a paragraph around it."""
    return _MD.renderInline(text, {"base_dir": Path(base_dir)})


def text_of(markdown_text: str) -> str:
    """The words a reader sees, markup and escapes removed (for <title> and alt text)."""
    return "".join(_MD.renderer.renderInlineAsText(t.children, _MD.options, {}) for t in _MD.parseInline(markdown_text))


def markdown_to_html(text: str, base_dir: Path, title: str | None = None) -> str:
    """The page as one self-contained HTML document, titled by its first `# heading` unless `title` is given."""
    env = {"base_dir": Path(base_dir)}
    tokens = _MD.parse(text, env)
    h1 = [tokens[i + 1].children for i, t in enumerate(tokens) if t.type == "heading_open" and t.tag == "h1"]
    title = title or (_MD.renderer.renderInlineAsText(h1[0], _MD.options, env) if h1 else None)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title or 'imagefit')}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
            + _MD.renderer.render(tokens, _MD.options, env)
            + "<footer>Written by imagefit from the files in this folder; self-contained (images embedded, "
              "nothing loaded from a network).</footer>\n</main>\n</body>\n</html>\n")


def write_html(md_path: str | Path, html_path: str | Path | None = None) -> Path:
    """`report.md` -> `report.html` beside it (or `html_path`), images from the markdown's folder embedded."""
    md_path = Path(md_path)
    html_path = Path(html_path) if html_path else md_path.with_suffix(".html")
    atomic.write_text(html_path, markdown_to_html(md_path.read_text(encoding="utf-8"), md_path.parent))
    return html_path
