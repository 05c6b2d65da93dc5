"""Self-contained HTML from imagefit's own markdown pages (report.md, comparison.md).

One file per page, nothing fetched from a network: images are embedded as base64 data URIs, the style
sheet is inline, and there is no script. The renderer reads only the small markdown subset imagefit
writes (headings, paragraphs, pipe tables, `- ` lists, `> ` notes, images alone on a line, `code`,
**bold** and links), so the HTML and the markdown can never say different things. Links to a local
`.md` page point at its `.html` twin instead.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

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
# A backslash before ASCII punctuation is CommonMark's escape: the character itself, never the start of code,
# bold, a link or an image (report.markdown.literal writes names so). Inside bold, image and link text an
# escape is one unit, so an escaped `*` or `]` cannot close them.
_ESC = r"\\[!-/:-@\[-`{-~]"
_INLINE = re.compile(rf"({_ESC})|`([^`]+)`|\*\*((?:\\[\s\S]|[^\\])+?)\*\*"
                     r"|!\[((?:\\[\s\S]|[^\\\]])*)\]\(([^)\s]+)\)|\[((?:\\[\s\S]|[^\\\]])+)\]\(([^)\s]+)\)")


def _data_uri(path: Path) -> str | None:
    mime = MIME.get(path.suffix.lower())
    if mime is None or not path.is_file():
        return None
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:")


def _href(target: str) -> str | None:
    """Relative links and #anchors only: a class or run name is user input, and a `javascript:` (or any other
    scheme, or a //host) link written into the markdown must not become a live link in the page."""
    if _SCHEME.match(target) or target.startswith(("/", "\\")):
        return None
    if target.endswith(".md"):
        target = target[:-3] + ".html"
    return html.escape(target, quote=True)


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def _image(alt: str, src: str, base_dir: Path) -> str:
    local = not _SCHEME.match(src) and not src.startswith("/") and _inside(base_dir / src, base_dir)
    uri = _data_uri(base_dir / src) if local else None  # only files inside the report's folder are embedded
    if uri is None:  # never a network fetch: a missing or remote image is named, not loaded
        return f'<span class="missing">[image not found: {html.escape(src)}]</span>'
    return f'<img src="{uri}" alt="{html.escape(alt, quote=True)}" loading="eager">'


def inline(text: str, base_dir: Path) -> str:
    """Escape, then turn `code`, **bold**, images and links into tags; a backslash-escaped character is text."""
    out, pos = [], 0
    for m in _INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()], quote=False))
        escaped, code, bold, alt, src, label, target = m.groups()
        if escaped is not None:
            out.append(html.escape(escaped[1], quote=False))
        elif code is not None:
            out.append(f"<code>{html.escape(code, quote=False)}</code>")
        elif bold is not None:
            out.append(f"<strong>{inline(bold, base_dir)}</strong>")
        elif src is not None:
            out.append(_image(text_of(alt), src, base_dir))
        elif _href(target) is None:  # not a link: the text as written
            out.append(html.escape(m.group(0), quote=False))
        else:
            out.append(f'<a href="{_href(target)}">{inline(label, base_dir)}</a>')
        pos = m.end()
    out.append(html.escape(text[pos:], quote=False))
    return "".join(out)


def text_of(markdown_text: str) -> str:
    """The words a reader sees, markup and escapes removed (for <title> and alt text)."""
    out, pos = [], 0
    for m in _INLINE.finditer(markdown_text):
        out.append(markdown_text[pos:m.start()])
        escaped, code, bold, alt, _, label, _ = m.groups()
        out.append(escaped[1] if escaped is not None else code if code is not None
                   else text_of(bold if bold is not None else alt if alt is not None else label))
        pos = m.end()
    return "".join(out) + markdown_text[pos:]


def _split_row(line: str) -> list[str]:
    cells, cell, i = [], [], 0
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body) and body[i + 1] == "|":
            cell.append("|")
            i += 2
            continue
        if body[i] == "|":
            cells.append("".join(cell).strip())
            cell = []
        else:
            cell.append(body[i])
        i += 1
    cells.append("".join(cell).strip())
    return cells


def _is_numeric(cell: str) -> bool:
    plain = cell.replace("**", "").strip()
    return plain in ("–", "-") or bool(_NUMERIC.fullmatch(plain))


def _table(lines: list[str], base_dir: Path) -> str:
    header = _split_row(lines[0])
    rows = [_split_row(line) for line in lines[2:]]

    def filled(i):
        return [r[i] for r in rows if i < len(r) and r[i].replace("**", "").strip() not in ("–", "-", "")]

    # a column that is mostly numbers is right-aligned, words included (a metrics-by-run table has a
    # text row or two); a column of words stays left-aligned
    numeric = [bool(filled(i)) and sum(map(_is_numeric, filled(i))) > len(filled(i)) / 2 for i in range(len(header))]
    signed = [h.strip().lower() in ("change", "Δ") for h in header]  # only a change column is colored
    head = "".join(f'<th{" class=num" if numeric[i] else ""}>{inline(h, base_dir)}</th>' for i, h in enumerate(header))
    body = []
    for r in rows:
        cells = []
        for i, c in enumerate(r):
            num = i < len(numeric) and numeric[i]
            text = inline(c, base_dir)
            if i < len(signed) and signed[i] and re.fullmatch(r"[+\-−]\d*\.?\d+", c.strip()):
                up = c.strip().startswith("+")
                zero = not re.search(r"[1-9]", c)
                text = text if zero else f'<span class="{"up" if up else "down"}">{text}</span>'
            cells.append(f"<td{' class=num' if num else ''}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def markdown_to_html(text: str, base_dir: Path, title: str | None = None) -> str:
    """The page as one self-contained HTML document."""
    lines = text.splitlines()
    parts: list[str] = []
    paragraph: list[str] = []

    def flush():
        if paragraph:
            parts.append(f"<p>{inline(' '.join(paragraph), base_dir)}</p>")
            paragraph.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            flush()
            i += 1
            continue
        heading = re.match(r"(#{1,4})\s+(.*)", stripped)
        if heading:
            flush()
            level = len(heading.group(1))
            if level == 1 and title is None:
                title = text_of(heading.group(2))
            parts.append(f"<h{level}>{inline(heading.group(2), base_dir)}</h{level}>")
            i += 1
            continue
        if stripped.startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?",
                                                                          lines[i + 1].strip()):
            flush()
            block = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                block.append(lines[i])
                i += 1
            parts.append(_table(block, base_dir))
            continue
        if stripped.startswith(">"):
            flush()
            quote = []
            while i < len(lines) and lines[i].strip().startswith(">"):
                quote.append(lines[i].strip()[1:].strip())
                i += 1
            parts.append(f"<blockquote><p>{inline(' '.join(quote), base_dir)}</p></blockquote>")
            continue
        if re.match(r"[-*]\s+", stripped):
            flush()
            items = []
            while i < len(lines) and re.match(r"\s*[-*]\s+", lines[i]):
                items.append(re.sub(r"^\s*[-*]\s+", "", lines[i]))
                i += 1
            parts.append("<ul>" + "".join(f"<li>{inline(t, base_dir)}</li>" for t in items) + "</ul>")
            continue
        figure = re.fullmatch(r"!\[([^\]]*)\]\(([^)\s]+)\)", stripped)
        if figure:
            flush()
            alt, src = figure.groups()
            parts.append(f"<figure>{_image(text_of(alt), src, base_dir)}</figure>")
            i += 1
            continue
        paragraph.append(stripped)
        i += 1
    flush()
    title = title or "imagefit"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(parts)
            + "\n<footer>Written by imagefit from the files in this folder; self-contained (images embedded, "
              "nothing loaded from a network).</footer>\n</main>\n</body>\n</html>\n")


def write_html(md_path: str | Path, html_path: str | Path | None = None) -> Path:
    """`report.md` -> `report.html` beside it (or `html_path`), images from the markdown's folder embedded."""
    md_path = Path(md_path)
    html_path = Path(html_path) if html_path else md_path.with_suffix(".html")
    atomic.write_text(html_path, markdown_to_html(md_path.read_text(encoding="utf-8"), md_path.parent))
    return html_path
