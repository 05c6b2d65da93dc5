"""`imagefit serve [RUNS_DIR]`: a local web page of a runs folder's runs and studies, with a run's predictions
and Grad-CAM for images a person drops on it (app.py; the page is static/, no build step, nothing from the
network). Bound to 127.0.0.1 unless `--host` says otherwise. FastAPI and uvicorn are the `serve` extra."""
from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

from ..errors import UserError

LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def create_app(runs_dir: str | Path, max_upload_mb: float = 16, trusted_hosts: list[str] | None = None):
    """The FastAPI app over `runs_dir` (see app.py); UserError when FastAPI is missing."""
    try:
        from .app import create_app as build
    except ImportError as e:
        raise UserError(f"imagefit serve needs FastAPI and uvicorn ({e.name} is not installed)",
                        "pip install 'imagefit[serve]'") from None
    return build(runs_dir, max_upload_mb, trusted_hosts)


def is_loopback(host: str) -> bool:
    try:
        return host in LOOPBACK or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port in use is one line, and --port 0 picks a free port."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        raise UserError(f"cannot listen on {host} port {port}: {e.strerror or e}",
                        "pass another --port (0 picks a free one), or --host 127.0.0.1") from None
    return sock


def serve(runs_dir: str | Path = "runs", host: str = "127.0.0.1", port: int = 8000, max_upload_mb: float = 16) -> int:
    """Serve until Ctrl-C. Prints the page's address first (with --port 0, the port chosen)."""
    try:
        import uvicorn
    except ImportError:
        raise UserError("imagefit serve needs FastAPI and uvicorn (uvicorn is not installed)",
                        "pip install 'imagefit[serve]'") from None
    folder = Path(runs_dir).expanduser()
    if not folder.is_dir():
        raise UserError(f"runs folder not found: {folder}", "pass the folder imagefit train wrote (default: runs)")
    if not 0 < max_upload_mb <= 1024:
        raise UserError(f"--max-upload-mb must be above 0 and at most 1024, got {max_upload_mb:g}",
                        "pass --max-upload-mb 16")
    local = is_loopback(host)
    app = create_app(folder, max_upload_mb, trusted_hosts=["127.0.0.1", "localhost"] if local and ":" not in host else None)
    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    print(f"imagefit serve: http://{shown}:{sock.getsockname()[1]}/ (runs folder {folder.resolve()}; Ctrl-C stops)",
          flush=True)
    if not local:
        print(f"note: bound to {host}, so anyone who can reach this machine can see the runs and upload images",
              flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
