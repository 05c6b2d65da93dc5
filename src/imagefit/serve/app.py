"""The web application of `imagefit serve`: the page, the runs list, the run folders' files and predictions.

Routes: `/` (static/index.html, its script and style), `GET /api/runs` (catalog.scan), `GET /files/<path>` (a
file inside the runs folder, nothing else: catalog.inside), `POST /api/runs/<run>/predict` (one image, as
the request body or a multipart form's file). An upload is read into memory up to the limit and refused past
it before the rest is read; a form's file goes through Starlette's spooled temporary file (the system's
temporary folder) and nowhere else. The page and the run reports are sent with a Content-Security-Policy
that allows no script but the page's own and no resource from the network.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from .catalog import NotFound, inside, run_folder, scan
from .predictions import BadImage, Predictors

STATIC = Path(__file__).with_name("static")
FORM_SLACK = 64 * 1024  # a multipart form's boundaries and headers around the file
PAGE_POLICY = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
               "form-action 'none'; frame-ancestors 'none'")
FILE_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'"


class UploadError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_upload(request: Request, limit: int, limit_text: str) -> bytes:
    """The uploaded file's bytes: the body itself, or the one file of a multipart form. Past `limit` bytes
    (declared or counted) it stops reading and raises UploadError 413."""
    too_big = UploadError(413, f"the file is larger than this server's upload limit of {limit_text} "
                               "(imagefit serve --max-upload-mb sets it)")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FORM_SLACK:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit + FORM_SLACK:
            raise too_big
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async def replay():
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=1, max_fields=8)
        except AssertionError:  # Starlette's word for a missing python-multipart
            raise UploadError(400, "this server cannot read forms (pip install python-multipart); send the image "
                                   "as the request body") from None
        except Exception as e:  # noqa: BLE001 - a malformed form is the client's
            raise UploadError(400, f"the form could not be read ({type(e).__name__})") from None
        try:
            files = [v for v in form.values() if isinstance(v, UploadFile)]
            if not files:
                raise UploadError(400, "the form holds no file")
            data = await files[0].read()
        finally:
            await form.close()
    else:
        data = bytes(body)
    if len(data) > limit:
        raise too_big
    return data


def create_app(runs_dir: str | Path, max_upload_mb: float = 16, trusted_hosts: list[str] | None = None) -> FastAPI:
    """The app over one runs folder. `trusted_hosts`: the Host headers accepted (a page on another site that
    resolves its own name to 127.0.0.1 is refused); None accepts any."""
    root = Path(runs_dir).expanduser().resolve()
    limit = int(max_upload_mb * 2**20)
    limit_text = f"{max_upload_mb:g} MB"
    predictors = Predictors()
    app = FastAPI(title="imagefit", docs_url=None, redoc_url=None, openapi_url=None)
    if trusted_hosts:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=trusted_hosts)

    @app.middleware("http")
    async def policy(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy",
                                    FILE_POLICY if request.url.path.startswith("/files/") else PAGE_POLICY)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/runs")
    def runs():
        return {"runs_dir": str(root), "max_upload_mb": max_upload_mb, **scan(root)}

    @app.get("/files/{path:path}")
    def files(path: str):
        try:
            found = inside(root, path)
        except NotFound:
            return error(404, "not found")
        if not found.is_file():
            return error(404, "not found")
        return FileResponse(found)

    @app.post("/api/runs/{name:path}/predict")
    async def predict(name: str, request: Request, top_k: int = 5):
        try:
            folder = run_folder(root, name)
        except NotFound:
            return error(404, f"no run named {name!r} with a model in this runs folder")
        try:
            data = await read_upload(request, limit, limit_text)
            result = await run_in_threadpool(predictors.predict, folder, data, top_k)
        except UploadError as e:
            return error(e.status, str(e))
        except BadImage as e:
            return error(400, str(e))
        return {"run": name, **result}

    return app
