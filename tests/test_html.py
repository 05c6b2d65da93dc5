"""The HTML pages: self-contained markdown rendering, and a real headless Chromium that loads them.

The Chromium checks skip when no chromium is installed, except with IMAGEFIT_REQUIRE_CHROMIUM=1 (CI),
where a missing browser is a failure.
"""
import base64
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

import imagefit
from helpers import chromium_or_skip
from imagefit.report.html import markdown_to_html, write_html

PNG_1x1 = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==")


def flat(page):
    """The page with the line breaks between tags removed (markdown-it writes one tag a line in blocks)."""
    return page.replace(">\n<", "><")


# ---- the renderer ---------------------------------------------------------------------------------
def test_markdown_subset_renders_self_contained(tmp_path):
    (tmp_path / "pic.png").write_bytes(PNG_1x1)
    md = "\n".join([
        "# Run <b>x</b>: a & b", "",
        "> **Interrupted run.** Stopped after 2 of 10 epochs.", "",
        "## Table", "",
        "| Metric | Value |", "|---|---|",
        "| Test accuracy | **0.9123** |", "| Epochs run | 6 of 10 |", "| Wall time | 1 min 16 s |",
        "| Pipe \\| in a cell | x |", "",
        "- `report.md`: this [page](other/report.md)", "- see [docs](https://example.org/a.md)", "",
        "![curves](pic.png)", "",
        "![gone](missing.png)", "",
        "A paragraph with <script>alert(1)</script> in it,", "over two lines.",
    ])
    page = flat(markdown_to_html(md, tmp_path))
    assert page.startswith("<!DOCTYPE html>") and "<title>Run <b>x</b>: a &amp; b</title>" not in page
    assert "<title>Run &lt;b&gt;x&lt;/b&gt;: a &amp; b</title>" in page
    assert "<h1>Run &lt;b&gt;x&lt;/b&gt;: a &amp; b</h1>" in page
    assert "<blockquote><p><strong>Interrupted run.</strong> Stopped after 2 of 10 epochs.</p></blockquote>" in page
    assert '<th>Metric</th><th class="num">Value</th>' in page
    assert '<td class="num"><strong>0.9123</strong></td>' in page and '<td class="num">1 min 16 s</td>' in page
    assert "<td>Pipe | in a cell</td>" in page
    assert '<a href="other/report.html">page</a>' in page  # a local .md page links to its .html twin
    assert "[docs](https://example.org/a.md)" in page and '<a href="https' not in page  # remote: text, not a link
    uri = re.search(r'<img src="data:image/png;base64,([^"]+)" alt="curves"', page).group(1)
    assert base64.b64decode(uri) == PNG_1x1
    assert "[image not found: missing.png]" in page
    assert "<p>A paragraph with &lt;script&gt;alert(1)&lt;/script&gt; in it,\nover two lines.</p>" in page
    # nothing is fetched: no external resource of any kind
    assert "<script" not in page and "<link" not in page and not re.search(r'src="(?!data:)', page)
    assert "@import" not in page and "url(" not in page


def test_names_cannot_smuggle_links_or_files_into_the_page(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "secret.png").write_bytes(PNG_1x1)  # outside the report's folder
    evil = ["[x](javascript:alert(1))", "[y](JaVaScRiPt:alert(1))", "[z](data:text/html;base64,PHNjcmlwdD4=)",
            "[w](//evil.example/x)", "[v](/etc/passwd)", "[u](vbscript:msgbox)"]
    md = "\n".join(["# Classes", "", "| class | F1 |", "|---|---|", *[f"| {e} | 0.5 |" for e in evil], "",
                    "![leak](../secret.png)", "", "[fine](other.md) and [anchor](#top)"])
    page = markdown_to_html(md, tmp_path / "run")
    hrefs = re.findall(r'<a href="([^"]*)"', page)
    assert hrefs == ["other.html", "#top"]  # the relative link and the anchor only
    for e in evil:
        assert e in page  # shown as the text it is
    assert "[image not found: ../secret.png]" in page and "base64,iVBOR" not in page


def test_only_relative_links_and_images_from_the_page_folder_survive(tmp_path):
    """A link stays a link only when relative; an image is embedded only from inside the page's folder. Anything
    else is shown as the text it was written as, or named, never followed or loaded. Raw HTML in a name is text."""
    folder = tmp_path / "run"
    (folder / "plots").mkdir(parents=True)
    (folder / "plots" / "in.png").write_bytes(PNG_1x1)
    (tmp_path / "outside.png").write_bytes(PNG_1x1)  # beside the page's folder: ../outside.png
    (folder / "link.png").symlink_to(tmp_path / "outside.png")  # inside by name, outside in fact
    absolute = f"![abs]({tmp_path / 'outside.png'})"
    md = "\n".join([
        "[js](javascript:alert(1)) [web](http://evil.example/x) [kept](sub/page.md#top) [up](../other/report.md)", "",
        absolute, "", "![up](../outside.png)", "", "![up2](%2E%2E/outside.png)", "", "![sym](link.png)", "",
        "![in](plots/in.png)", "",
        "| class | F1 |", "|---|---|", "| <img src=x onerror=alert(1)> | 0.5 |", "| <script>alert(1)</script> | 0.4 |",
    ])
    page = markdown_to_html(md, folder)
    assert re.findall(r'<a href="([^"]*)"', page) == ["sub/page.html#top", "../other/report.html"]
    assert "[js](javascript:alert(1))" in page and "[web](http://evil.example/x)" in page  # text, not links
    assert absolute in page  # an absolute path is not an image at all
    for shown in ("../outside.png", "../outside.png", "link.png"):  # named, not loaded
        assert f'<figure><span class="missing">[image not found: {shown}]</span></figure>' in page
    embedded = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]*)"', page)
    assert embedded == [(base64.b64encode(PNG_1x1).decode(), "in")] and page.count("base64,") == 1
    assert "<td>&lt;img src=x onerror=alert(1)&gt;</td>" in page
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in page
    assert "<img src=x" not in page and "<script" not in page


def test_numbers_are_right_aligned_and_a_change_column_colored(tmp_path):
    md = "| Class | F1 | note | change |\n|---|---|---|---|\n| cat | 0.85 | ok | +0.05 |\n| dog | 0.65 | – | −0.05 |\n" \
         "| bird | 0.50 | 2 | +0.00 |\n"
    page = flat(markdown_to_html(md, tmp_path))
    assert '<th>Class</th><th class="num">F1</th><th>note</th><th class="num">change</th>' in page
    assert '<td>cat</td><td class="num">0.85</td><td>ok</td><td class="num"><span class="up">+0.05</span></td>' in page
    assert '<td class="num"><span class="down">−0.05</span></td>' in page and '<td class="num">+0.00</td>' in page


def test_backslash_escapes_are_the_character_itself(tmp_path):
    from imagefit.report.html import inline

    assert inline(r"\*\*x\*\* \[a\](b.md) \`c\` \<b\> \\ \& \q", tmp_path) == r"**x** [a](b.md) `c` &lt;b&gt; \ &amp; \q"
    assert inline(r"**a\*b** and [a\]b](x.md)", tmp_path) == '<strong>a*b</strong> and <a href="x.html">a]b</a>'
    assert inline(r"**a\**", tmp_path) == "*<em>a*</em>"  # an escaped star cannot close the bold (CommonMark)
    assert inline(r"`a\`", tmp_path) == "<code>a\\</code>"  # inside code a backslash is a backslash
    assert "<title>*x* &amp; y</title>" in markdown_to_html(r"# \*x\* & y", tmp_path)

# A class folder and a run name that are markdown if written unescaped: bold, a link, emphasis, code, HTML.
MARKUP_NAME = "**big** [x](y) _a_ `c` <b>"
MARKUP_NAME_ESCAPED = r"\*\*big\*\* \[x\](y) \_a\_ \`c\` \<b\>"  # as report.md must write it
MARKUP_NAME_HTML = "**big** [x](y) _a_ `c` &lt;b&gt;"  # as a reader sees it, HTML-escaped


def _no_markup_from_the_name(page):
    assert "<strong>big" not in page and "<em>a</em>" not in page and "<code>c</code>" not in page
    assert '<a href="y"' not in page and "<b>" not in page


def test_names_that_look_like_markdown_are_literal_text_in_every_page(tmp_path, capsys):
    from markdown_it import MarkdownIt

    from helpers import run_imagefit
    from imagefit.cli import main
    from helpers import write_image_folder

    write_image_folder(tmp_path / "photos", classes=(MARKUP_NAME, "[x](javascript:alert(1))", "blue"), per_class=8)
    run_imagefit("train", "--dataset", tmp_path / "photos", "--name", "*run* [r](s)", "--model", "seed-cnn",
                 "--epochs", "1", "--batch-size", "8", "--precision", "32", "--no-progress", "--image-size", "8",
                 "--runs-dir", tmp_path / "runs", "--cache-dir", tmp_path / "cache", cwd=tmp_path)
    run = tmp_path / "runs" / "*run* [r](s)"
    commonmark = MarkdownIt("commonmark").enable("table")  # a reference markdown reader (GitHub's tables)
    for md_file in ("report.md", "data_audit.md"):
        md = (run / md_file).read_text()
        assert MARKUP_NAME_ESCAPED in md and MARKUP_NAME not in md, md_file
        rendered = commonmark.render(md)
        assert MARKUP_NAME_HTML in rendered, md_file
        _no_markup_from_the_name(rendered)
    report = (run / "report.md").read_text()
    assert report.startswith(r"# Run \*run\* \[r\](s): seed-cnn on ")
    assert f"| {MARKUP_NAME_ESCAPED} |" in report  # the per-class table
    page = (run / "report.html").read_text()
    assert "<h1>Run *run* [r](s): seed-cnn on /" in page and f"<td>{MARKUP_NAME_HTML}</td>" in page
    assert "<title>Run *run* [r](s): seed-cnn on /" in page
    _no_markup_from_the_name(page)
    assert '<a href="s"' not in page and "<em>run</em>" not in page
    assert "<td>[x](javascript:alert(1))</td>" in page and not re.search(r'href="[^"]*javascript', page, re.I)

    # the comparison: run names in the table, the sentences and the links; class names in the per-class table
    shutil.copytree(run, tmp_path / "runs" / "_b_ (2)")
    assert main(["compare", str(run), str(tmp_path / "runs" / "_b_ (2)"), "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out  # the console's sentences are plain text
    assert "- _b_ (2), with *run* [r](s)'s configuration, left test accuracy unchanged" in printed
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert r"\_b\_ (2), with \*run\* \[r\](s)'s configuration, left test accuracy unchanged" in md
    assert r"Reference run: **\*run\* \[r\](s)**." in md and r"| \*run\* \[r\](s) | \_b\_ (2) |" in md
    assert "[report](../runs/%2Arun%2A%20%5Br%5D%28s%29/report.md)" in md  # the link's target percent-encoded
    assert f"| {MARKUP_NAME_ESCAPED} | " in md
    page = (tmp_path / "cmp" / "comparison.html").read_text()
    assert '<a href="../runs/%2Arun%2A%20%5Br%5D%28s%29/report.html">report</a>' in page
    assert f"<td>{MARKUP_NAME_HTML}</td>" in page and "<h2>Per-class F1 against *run* [r](s)</h2>" in page
    _no_markup_from_the_name(page)
    _no_markup_from_the_name(commonmark.render(md))

def test_write_html_puts_the_page_beside_the_markdown(tmp_path):
    (tmp_path / "report.md").write_text("# T\n\nhello\n")
    assert write_html(tmp_path / "report.md") == tmp_path / "report.html"
    assert "<p>hello</p>" in (tmp_path / "report.html").read_text()


def test_every_run_report_gets_its_html_twin(real_run):
    import json

    from imagefit.report import rebuild_report

    (real_run / "report.html").unlink()
    rebuild_report(real_run)
    page = flat((real_run / "report.html").read_text())
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (real_run / "report.md").read_text())
    assert "<h1>Run real: seed-cnn on digits</h1>" in page and len(pictures) >= 6  # curves, confusions, mistakes...
    embedded = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert [base64.b64decode(e) for e in embedded] == [(real_run / p).read_bytes() for p in pictures]
    assert "<code>report.md</code> and <code>report.html</code>" in page
    top = json.loads((real_run / "metrics.json").read_text())["top_confusions"][0]
    assert f"<td>{top['true']} → {top['predicted']}</td><td class=\"num\">{top['count']}</td>" in page


# ---- real pages in a real browser -------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    return chromium_or_skip()


def browse(page, tmp_path, *flags):
    browser = chromium_or_skip()
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", "--disable-dev-shm-usage", "--disable-extensions", "--mute-audio",
                           f"--user-data-dir={profile}", *flags, page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def loaded_images(html_path, tmp_path):
    """Each <img>'s natural width, as the browser measured it, written into the DOM by an added script."""
    probe = html_path.with_name(f".probe-{html_path.name}")
    script = ("<script>window.addEventListener('load', function () { var out = document.createElement('pre');"
              "out.id = 'imgcheck'; out.textContent = Array.prototype.map.call(document.images, function (i) {"
              "return i.complete ? i.naturalWidth + 'x' + i.naturalHeight : 'pending'; }).join(','); "
              "document.body.appendChild(out); });</script>")
    probe.write_text(html_path.read_text().replace("</body>", script + "</body>"))
    try:
        dom = browse(probe, tmp_path, "--virtual-time-budget=10000", "--dump-dom")
    finally:
        probe.unlink()
    found = re.search(r'<pre id="imgcheck">([^<]*)</pre>', dom)
    assert found, "the page's load event never fired"
    return dom, [s for s in found.group(1).split(",") if s]


def screenshot(html_path, tmp_path, name):
    shot = tmp_path / name
    browse(html_path, tmp_path, f"--screenshot={shot}", "--window-size=1200,2000")
    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("L"), dtype=np.float32)
    return shot, pixels


@pytest.fixture(scope="module")
def pages(browser, tmp_path_factory):  # no browser, no need to train
    tmp = tmp_path_factory.mktemp("pages")
    common = dict(dataset="digits", model="seed-cnn", epochs=2, batch_size=64, runs_dir=str(tmp / "runs"),
                  cache_dir=str(tmp / "cache"), progress=False, precision="32")
    a = imagefit.train(**common, name="slow", lr=0.001)
    b = imagefit.train(**common, name="fast", lr=0.01)
    comparison = imagefit.compare([a.dir, b.dir], title="Study pages")
    return tmp, comparison, a, b


def test_comparison_html_renders_in_chromium(pages, tmp_path):
    _, comparison, a, b = pages
    html_path = comparison.html
    assert html_path.is_file()
    dom, images = loaded_images(html_path, tmp_path)
    assert "<h1>Study pages</h1>" in dom
    table = re.search(r"<table>.*?</table>", dom, re.S).group(0)
    assert "<th>slow</th>" in table.replace(" class=\"num\"", "") or ">slow</th>" in table
    assert f"{a.metrics['test_accuracy']:.4f}" in table and f"{b.metrics['test_accuracy']:.4f}" in table
    assert "Test accuracy" in table and "Trainable parameters" in table
    assert images == ["1200x480"], images  # comparison.png, embedded, decoded by the browser at its real size
    shot, pixels = screenshot(html_path, tmp_path, "comparison.png")
    assert pixels.shape == (2000, 1200)
    assert pixels.std() > 20, "the screenshot is (nearly) blank"
    assert (pixels < 128).mean() > 0.01  # dark ink: text, table rules and curves


def test_run_report_html_renders_in_chromium(pages, tmp_path):
    _, _, a, _ = pages
    html_path = a.dir / "report.html"
    assert html_path.is_file()
    dom, images = loaded_images(html_path, tmp_path)
    assert "<h1>Run slow: seed-cnn on digits</h1>" in dom and "<table>" in dom
    assert f"{a.metrics['test_accuracy']:.4f}" in dom
    report = (a.dir / "report.md").read_text()
    pictures = report.count(".png)")  # curves, confusion, class balance, mistakes, Grad-CAM, calibration
    assert "(gradcam.png)" in report and len(images) == pictures >= 6 and all(not s.startswith(("0x", "pending")) for s in images), images
    _, pixels = screenshot(html_path, tmp_path, "report.png")
    assert pixels.std() > 20
