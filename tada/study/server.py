"""The study server (``tada study serve``): the bundle's page and audio, and the submissions.

Routes:

    GET  /                                  the rating page (public/index.html)
    GET  /api/plan?participant=<uuid>        the participant's plan (:func:`.plan.public_plan`)
    POST /api/submit                        one trial's ratings (:mod:`.ratings`):
                                            201 stored, 200 already stored (nothing written),
                                            4xx ``{"detail": reason}`` and nothing written:
                                            400 not JSON, 413 body over the limit, 415 not
                                            application/json, 422 schema or plan mismatch
    GET  /<path>                            a file of public/ (no directory listing, nothing
                                            outside public/, no symlink out of it)

A submission is acknowledged only after its row is fsynced (:class:`.ratings.RatingsStore`);
the file is written from a worker thread so a slow disk never blocks the event loop. The server
writes nothing but the ratings file, and binds to 127.0.0.1 unless told otherwise.
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations
# (`request: Request`) at run time, and they name classes imported inside create_app.
import contextlib
import logging
from pathlib import Path
from typing import Any

from .plan import PARTICIPANT, public_plan, read_manifest
from .ratings import RatingsStore, SubmissionError, SubmissionValidator

log = logging.getLogger(__name__)

#: largest accepted submission body (bytes); a 7-sample trial is about 1 KiB
DEFAULT_MAX_BODY = 64 * 1024
NO_STORE = {"Cache-Control": "no-store"}


def create_app(bundle_dir: str | Path, ratings_path: str | Path, *, max_body: int = DEFAULT_MAX_BODY) -> Any:
    """The ASGI app serving `bundle_dir` and appending to `ratings_path`."""
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.staticfiles import StaticFiles

    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    public = bundle_dir / "public"
    if not (public / "index.html").is_file():
        raise FileNotFoundError(f"{bundle_dir}: the bundle has no public/index.html")
    validator = SubmissionValidator(manifest)
    store = RatingsStore(ratings_path)
    log.info("serving %s (%d trials); ratings -> %s (%d rows already)", bundle_dir, len(manifest["trials"]),
             store.path, len(store))

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        store.close()

    app = FastAPI(title="tada listening study", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.store, app.state.manifest = store, manifest

    def refuse(status: int, reason: str) -> JSONResponse:
        return JSONResponse({"detail": reason}, status_code=status, headers=NO_STORE)

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(public / "index.html", headers=NO_STORE)

    @app.get("/api/plan")
    def plan(participant: str = "") -> JSONResponse:
        if not PARTICIPANT.match(participant):
            return refuse(422, "participant: expected a lowercase UUID")
        return JSONResponse(public_plan(manifest, participant), headers=NO_STORE)

    @app.post("/api/submit")
    async def submit(request: Request) -> JSONResponse:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return refuse(415, f"Content-Type must be application/json, not {ctype or 'missing'!r}")
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_body):
            return refuse(413, f"the body must be at most {max_body} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > max_body:
                return refuse(413, f"the body must be at most {max_body} bytes")
        try:
            row = validator(bytes(body))
        except SubmissionError as exc:
            return refuse(exc.status, str(exc))
        stored = await run_in_threadpool(store.append, row)
        return JSONResponse({"status": "stored" if stored else "duplicate", "trial": row["trial"]},
                            status_code=201 if stored else 200, headers=NO_STORE)

    app.mount("/", StaticFiles(directory=public, html=False, follow_symlink=False), name="public")
    return app


def serve(bundle_dir: str | Path, ratings_path: str | Path, *, host: str = "127.0.0.1", port: int = 8000,
          max_body: int = DEFAULT_MAX_BODY, log_level: str = "info") -> None:
    """Run the server until interrupted."""
    import uvicorn

    app = create_app(bundle_dir, ratings_path, max_body=max_body)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: the study is reachable from other machines", host)
    uvicorn.run(app, host=host, port=int(port), log_level=log_level, server_header=False, access_log=False)


class BackgroundServer:
    """The server on a free loopback port in a background thread (for tests and screenshots):
    ``with BackgroundServer(bundle, ratings) as url: ...``."""

    def __init__(self, bundle_dir: str | Path, ratings_path: str | Path, *, max_body: int = DEFAULT_MAX_BODY):
        self.app = create_app(bundle_dir, ratings_path, max_body=max_body)

    def __enter__(self) -> str:
        import socket
        import threading
        import time

        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        port = self._sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", access_log=False))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the study server did not start")
            time.sleep(0.02)
        return f"http://127.0.0.1:{port}/"

    def __exit__(self, *exc: Any) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
