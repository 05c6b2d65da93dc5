"""report.markdown: user-supplied names as literal markdown, read back by a CommonMark reader and by imagefit's
own HTML renderer as exactly the characters they were."""
import html
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from imagefit.report.html import inline, markdown_to_html
from imagefit.report.markdown import cell, code, link, literal, plain, table

# names without line breaks (literal turns those into spaces) and without NUL (CommonMark replaces it)
NAMES = st.text(st.characters(blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00",
                              blacklist_categories=("Cs",)), max_size=40)
# the characters markdown gives a meaning to, so that most examples hold some
MARKUPISH = st.text(st.sampled_from(list("\\`*_[]()#+-!<>|&~=.:1 ax")), max_size=30)
COMMONMARK = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def test_literal_escapes_what_markdown_would_read_as_markup():
    assert literal("**big** [x](y) _a_ `c` <b>") == r"\*\*big\*\* \[x\](y) \_a\_ \`c\` \<b\>"
    assert literal("a\\b|c&amp;~~d~~ #1") == r"a\\b\|c\&amp;\~\~d\~\~ \#1"
    assert literal("- x") == r"\- x" and literal("+ x") == r"\+ x" and literal("12. x") == r"12\. x"
    assert literal("3) x") == r"3\) x" and literal("===") == r"\===" and literal("!") == r"\!"
    # what means nothing mid-name stays readable in the raw file
    assert literal("seed-cnn-seed1") == "seed-cnn-seed1" and literal("golden_retriever") == "golden_retriever"
    assert literal("a\nb\u2028c") == "a b c"


def test_the_other_helpers():
    assert plain(literal("**big** [x](y) a\\b")) == "**big** [x](y) a\\b"
    assert code("cat/1.png") == "`cat/1.png`" and code("a`b") == r"a\`b"
    assert link("a (1)", "../runs/*r* [x](y)/report.md") == "[a (1)](../runs/%2Ar%2A%20%5Bx%5D%28y%29/report.md)"
    assert cell("a|b") == r"a\|b" and cell(literal("a|b")) == r"a\|b" and cell("a\\\\|b") == "a\\\\\\|b"
    assert table(["Class"], [[literal("x|y")]]) == ["| Class |", "|---|", r"| x\|y |", ""]


@settings(max_examples=300, deadline=None)
@given(st.one_of(NAMES, MARKUPISH))
def test_commonmark_reads_a_literal_name_as_its_characters(name):
    """A reference CommonMark reader (markdown-it, GitHub's tables on) finds text only, and the name's characters."""
    for line, where in [(f"a {literal(name)} b", "paragraph"), (f"- {literal(name)}", "list item"),
                        (f"# x {literal(name)} y", "heading")]:
        tokens = [t for t in COMMONMARK.parse(line) if t.type == "inline"]
        children = [c for t in tokens for c in t.children]
        assert {c.type for c in children} <= {"text"}, (where, children)
        shown = "".join(c.content for c in children)
        assert name.strip() in shown, where  # (a reader trims the blank ends of a block)
    rows = COMMONMARK.parse("\n".join(table(["h"], [[literal(name)]])))
    cells = [t for t in rows if t.type == "inline"][1:]
    assert {c.type for t in cells for c in t.children} <= {"text"}
    assert name.strip() in "".join(c.content for t in cells for c in t.children)


@settings(max_examples=300, deadline=None)
@given(st.one_of(NAMES, MARKUPISH))
def test_the_html_renderer_reads_a_literal_name_back_exactly(name):
    def escaped(text):  # as markdown-it escapes text: & < > and "
        return html.escape(text, quote=False).replace('"', "&quot;")

    assert inline(literal(name), Path(".")) == escaped(name)
    row = markdown_to_html("\n".join(table(["h"], [[literal(name)]])), Path("."))
    # a reader trims a cell's blanks; Python's strip() also takes separators such as \x1f, which stay as text
    assert re.search(rf'<td( class="num")?>\s*{re.escape(escaped(name.strip()))}\s*</td>', row)
