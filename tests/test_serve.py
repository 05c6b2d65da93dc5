"""`imagefit serve`: a real server process over a real runs folder (a trained run, a study of two, links out),
spoken to over HTTP with raw paths, and its page driven in the system's headless Chromium (Playwright).

What it must do: list runs and studies with links that load; answer an uploaded image with exactly the
numbers of `imagefit predict` and a Grad-CAM map; refuse an oversized upload, a non-image and a decompression
bomb each in one message; never serve or predict with anything outside the runs folder (`..`, encoded or
not, and symbolic links out).
"""
import base64
import http.client
import io
import json
import os
import shutil
import sys
import uuid
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

import imagefit
from helpers import chromium_or_skip, run_imagefit, start_server, stop

pytest.importorskip("fastapi")
LIMIT_MB = 1


@pytest.fixture(scope="module")
def served(trained_digits, tmp_path_factory):
    """runs/digits (the trained run), runs/study/{a,b} with their comparison, links out of the folder, and a
    server on it with a 1 MB upload limit; plus a digit PNG, a non-image, a bomb and a 2 MB file."""
    tmp = tmp_path_factory.mktemp("serve")
    runs = tmp / "runs"
    shutil.copytree(trained_digits.dir, runs / "digits")
    for name in ("a", "b"):
        shutil.copytree(trained_digits.dir, runs / "study" / name)
    imagefit.compare([runs / "study" / "a", runs / "study" / "b"], title="A study")
    (tmp / "secret.txt").write_text("not for the page")
    shutil.copytree(trained_digits.dir, tmp / "outside-run")
    (runs / "leak.txt").symlink_to(tmp / "secret.txt")
    (runs / "linked-run").symlink_to(tmp / "outside-run", target_is_directory=True)
    (runs / "digits" / "leak.txt").symlink_to(tmp / "secret.txt")
    from sklearn.datasets import load_digits

    files = tmp / "files"
    files.mkdir()
    digits = load_digits()
    Image.fromarray((digits.images[5] * 16).clip(0, 255).astype(np.uint8)).save(files / "digit.png")
    Image.fromarray((digits.images[7] * 16).clip(0, 255).astype(np.uint8)).resize((40, 40)).save(files / "other.jpg")
    (files / "notes.png").write_text("a text file with an image's name\n")
    Image.new("1", (15000, 15000)).save(files / "bomb.png")  # 225 Mpx in about 27 KB
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (900, 900, 3), dtype=np.uint8)).save(files / "big.png")
    assert (files / "big.png").stat().st_size > LIMIT_MB * 2**20 and (files / "bomb.png").stat().st_size < 2**20
    proc, url = start_server(runs, "--max-upload-mb", LIMIT_MB, log_dir=tmp)
    yield runs, files, url
    stop(proc)


def request(url, method, path, body=None, headers=None):
    """(status, headers, body) for a raw path: http.client sends `..` as written, where a browser would fold it."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def post_image(url, run, data, form=False):
    if not form:
        return request(url, "POST", f"/api/runs/{run}/predict", data, {"Content-Type": "application/octet-stream"})
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return request(url, "POST", f"/api/runs/{run}/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


@pytest.fixture(scope="module")
def cli_prediction(served):
    """`imagefit predict --json` and its table, on the digit PNG: what the page must show."""
    runs, files, _ = served
    proc = run_imagefit("predict", runs / "digits", files / "digit.png", "--json", "--top-k", "5", cwd=files)
    table = run_imagefit("predict", runs / "digits", files / "digit.png", cwd=files).stdout.splitlines()[0]
    return json.loads(proc.stdout)["predictions"][0]["top"], table


def test_runs_and_studies_are_listed_with_links_that_load(served, trained_digits):
    runs, _, url = served
    status, _, body = request(url, "GET", "/api/runs")
    listing = json.loads(body)
    by_name = {r["name"]: r for r in listing["runs"]}
    assert sorted(by_name) == ["digits", "study/a", "study/b"]  # the linked run outside is not listed
    run = by_name["digits"]
    m = trained_digits.metrics
    assert (run["dataset"], run["model"], run["test_accuracy"]) == ("digits", "seed-cnn", m["test_accuracy"])
    assert run["predicts"] and run["date"][:4].isdigit()
    (study,) = listing["studies"]
    assert study["name"] == "study" and study["runs"] == 2
    status, headers, page = request(url, "GET", run["report"])
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"<h1>Run real: seed-cnn on digits</h1>" in page and "script-src" not in headers["content-security-policy"]
    assert "default-src 'none'" in headers["content-security-policy"]  # a report runs no script, loads nothing
    status, _, page = request(url, "GET", study["comparison"])
    assert status == 200 and b"<h1>A study</h1>" in page


@pytest.mark.parametrize("path", ["/files/../secret.txt", "/files/..%2Fsecret.txt", "/files/%2e%2e/secret.txt",
                                  "/files/digits/../../secret.txt", "/files/leak.txt", "/files/digits/leak.txt",
                                  "/files/linked-run/metrics.json", "/files//etc/passwd", "/files/digits",
                                  "/files/digits/missing.png", "/files/%00", "/files/..\\secret.txt"])
def test_no_file_outside_the_runs_folder_is_served(served, path):
    status, _, body = request(served[2], "GET", path)
    assert status == 404 and b"not for the page" not in body


@pytest.mark.parametrize("run", ["../runs/digits", "..%2Fruns%2Fdigits", "study/../digits", "linked-run",
                                 "digits/checkpoints", "nothing"])
def test_a_run_name_outside_the_folder_or_not_a_run_gets_404(served, run):
    status, _, body = post_image(served[2], run, (served[1] / "digit.png").read_bytes())
    assert status == 404 and "error" in json.loads(body)


@pytest.mark.parametrize("form", [False, True], ids=["body", "multipart"])
def test_prediction_equals_imagefit_predict_with_a_gradcam_map(served, cli_prediction, form):
    runs, files, url = served
    top, _ = cli_prediction
    before = tree(runs)
    status, _, body = post_image(url, "digits", (files / "digit.png").read_bytes(), form=form)
    assert tree(runs) == before  # the upload left nothing in the runs folder
    answer = json.loads(body)
    assert status == 200, answer
    assert [a["class"] for a in answer["top"]] == [t["class"] for t in top]
    assert [round(a["probability"], 6) for a in answer["top"]] == [t["probability"] for t in top]
    cam = answer["gradcam"]
    assert cam["class"] == top[0]["class"] and cam["layer"].endswith(trained_digits_layer(runs))
    with Image.open(io.BytesIO(base64.b64decode(cam["image"].split(",", 1)[1]))) as im:
        assert im.format == "PNG" and im.size == (128, 128)  # enlarged from the run's 8 px
        assert np.asarray(im.convert("RGB")).std() > 5  # a map, not a blank tile


def tree(folder):
    return sorted((str(p.relative_to(folder)), p.lstat().st_size, p.lstat().st_mtime_ns) for p in folder.rglob("*"))


def trained_digits_layer(runs):
    return json.loads((runs / "digits" / "metrics.json").read_text())["gradcam_target_layer"]


@pytest.mark.parametrize("name, status, words", [
    ("big.png", 413, f"larger than this server's upload limit of {LIMIT_MB} MB"),
    ("notes.png", 400, "not an image imagefit can read"),
    ("bomb.png", 400, "decompression bomb"),
])
def test_bad_uploads_get_one_message_each(served, name, status, words):
    _, files, url = served
    for form in (False, True):
        got, _, body = post_image(url, "digits", (files / name).read_bytes(), form=form)
        message = json.loads(body)["error"]
        assert got == status and words in message and "\n" not in message
    got, _, body = post_image(url, "digits", b"")
    assert got == 400 and json.loads(body)["error"] == "the file is empty (0 bytes)"


def test_the_page_in_chromium(served, cli_prediction, trained_digits):
    """The page as a person uses it: the runs list, a chosen image's prediction, the two refusals, a report."""
    executable = chromium_or_skip()
    if os.environ.get("IMAGEFIT_REQUIRE_CHROMIUM") != "1":
        pytest.importorskip("playwright")
    from playwright.sync_api import sync_playwright

    runs, files, url = served
    top, table = cli_prediction
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page()
            outside = []
            page.on("request", lambda r: None if r.url.startswith((url, "data:")) else outside.append(r.url))
            errors, crashes = [], []  # console errors (a refused request logs one), uncaught script errors
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: crashes.append(str(e)))
            page.goto(url + "/")
            page.wait_for_selector("body[data-loaded=runs]")
            row = page.locator("#runs tr[data-run=digits] td")
            assert row.nth(0).inner_text() == "digits" and row.nth(1).inner_text() == "digits"
            assert row.nth(3).inner_text() == f"{trained_digits.metrics['test_accuracy']:.4f}"
            assert page.locator("#studies tr[data-study=study]").count() == 1
            page.select_option("#run", label="digits")

            page.set_input_files("#files", str(files / "digit.png"))
            card = page.locator(".card[data-file='digit.png'][data-state=done]")
            card.wait_for(timeout=60_000)
            first = card.locator("ol.top li").first
            shown = f"{first.locator('.class').inner_text()} {first.locator('.probability').inner_text()}"
            assert table.startswith(f"{files / 'digit.png'}: {shown},")  # as `imagefit predict` prints it
            assert round(float(first.get_attribute("data-probability")), 6) == top[0]["probability"]
            assert card.locator("ol.top li").count() == 5
            sizes = card.locator("img").evaluate_all("imgs => imgs.map(i => i.complete && i.naturalWidth)")
            assert sizes == [128, 128]  # the image as the model saw it, and its Grad-CAM map, both decoded
            assert errors == [] and crashes == []  # nothing refused so far, not even a favicon

            for name, words in (("big.png", f"upload limit of {LIMIT_MB} MB"), ("notes.png", "not an image")):
                page.set_input_files("#files", str(files / name))
                bad = page.locator(f".card[data-file='{name}'][data-state=error] .error")
                bad.wait_for(timeout=60_000)
                assert words in bad.inner_text()

            assert page.goto(url + "/files/..%2Fsecret.txt").status == 404
            assert page.goto(url + "/files/leak.txt").status == 404
            assert page.request.post(url + "/api/runs/..%2Fdigits/predict", data=b"x").status == 404
            page.goto(url + "/")
            page.wait_for_selector("body[data-loaded=runs]")
            page.click("#runs tr[data-run=digits] a:text('report')")
            page.wait_for_selector("h1")
            assert page.locator("h1").inner_text() == "Run real: seed-cnn on digits"
            assert page.locator("img").count() >= 6 and all(page.locator("img").evaluate_all(
                "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)"))
            assert outside == [] and crashes == []
        finally:
            browser.close()


def test_serve_mistakes_are_one_line(tmp_path, served):
    proc = run_imagefit("serve", tmp_path / "nowhere", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "runs folder not found" in proc.stderr
    port = urlsplit(served[2]).port
    proc = run_imagefit("serve", served[0], "--port", port, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and f"cannot listen on 127.0.0.1 port {port}" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    blocked = ("import sys; sys.modules['fastapi'] = None; from imagefit.cli import main; "
               f"sys.exit(main(['serve', {str(served[0])!r}, '--port', '0']))")
    import subprocess

    proc = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == ("imagefit: error: imagefit serve needs FastAPI and uvicorn "
                                                            "(fastapi is not installed) (fix: pip install 'imagefit[serve]')")
