"""The playground server (``tada play``): a FastAPI app on uvicorn, like the study server, whose
page plays the α stops through the study's crossfade player (served from the study's own
static folder, not copied).

Routes:

    GET  /                      the page (static/play.html)
    GET  /api/menu              methods, concepts per method with their α stops, settings
    POST /api/generate          {"prompt", "seed", "method", "axes": [{"concept", "alpha"}, ...]}
                                -> {"stops": [{"index", "alpha", "key", "url", "cached"}], "first"}:
                                the stops are queued on the model worker at once; each stop's
                                WAV is fetched from its url and arrives as soon as its batch is
                                done (the stop under the slider first). 4xx {"detail": reason}:
                                400 not JSON, 413 body too large, 415 not application/json,
                                422 a bad field (empty or long prompt, unknown concept or
                                method, α outside the range, ...)
    GET  /api/clip/<key>.wav    one stop (waits for it while it renders; 404 unknown key)
    POST /api/save              {"key"} -> writes <out>/<name>.wav and .json (the sidecar)
    GET  /static/<file>         the page's files; /study-static/<file> the study's (crossfade.js)
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at run time.
import asyncio
import contextlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from tada.study.server import BackgroundServer

from .engine import Engine, PlayError

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
STUDY_STATIC = Path(__file__).resolve().parents[1] / "study" / "static"
#: largest accepted request body (bytes)
MAX_BODY = 16 * 1024
#: seconds a clip request waits for its batch
CLIP_TIMEOUT = 300.0
NO_STORE = {"Cache-Control": "no-store"}
KEY = re.compile(r"^[0-9a-f]{32}$")


def create_app(engine: Engine, save_dir: str | Path) -> Any:
    """The ASGI app of `engine`, saving clips under `save_dir`."""
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.staticfiles import StaticFiles

    save_dir = Path(save_dir)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        engine.close()

    app = FastAPI(title="tada playground", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.engine = engine

    def refuse(status: int, reason: str) -> JSONResponse:
        return JSONResponse({"detail": reason}, status_code=status, headers=NO_STORE)

    async def body_json(request: Request) -> Any:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise PlayError(f"Content-Type must be application/json, not {ctype or 'missing'!r}", 415)
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_BODY:
                raise PlayError(f"the body must be at most {MAX_BODY} bytes", 413)
        try:
            return json.loads(bytes(body))
        except ValueError as exc:
            raise PlayError(f"the body is not JSON ({exc})", 400) from exc

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "play.html", headers=NO_STORE)

    @app.get("/api/menu")
    def menu() -> JSONResponse:
        from .engine import MAX_AXES, MAX_PROMPT_CHARS

        out = engine.catalog.menu()
        out.update(model=engine.model_name, steps=engine.steps, guidance=engine.guidance,
                   duration=engine.duration, n_stops=engine.n_stops, max_axes=MAX_AXES,
                   max_prompt_chars=MAX_PROMPT_CHARS)
        return JSONResponse(out, headers=NO_STORE)

    @app.post("/api/generate")
    async def generate(request: Request) -> JSONResponse:
        try:
            plan = await run_in_threadpool(engine.plan, await body_json(request))
        except PlayError as exc:
            return refuse(exc.status, str(exc))
        futures = engine.submit(plan)
        stops = [{"index": j, "alpha": plan.rows[j][0], "key": key, "url": f"api/clip/{key}.wav",
                  "cached": futures[j].done()} for j, key in enumerate(plan.keys)]
        return JSONResponse({"stops": stops, "first": plan.first, "prompt": plan.prompt,
                             "alphas": plan.rows[plan.first]}, headers=NO_STORE)

    @app.get("/api/clip/{name}")
    async def clip(name: str) -> Response:
        key = name[:-4] if name.endswith(".wav") else name
        fut = engine.future(key) if KEY.match(key) else None
        if fut is None:
            return refuse(404, f"no clip {name!r} (generate it first)")
        try:
            # shield: a client that leaves must not cancel the clip other clients wait for
            found = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), CLIP_TIMEOUT)
        except asyncio.TimeoutError:
            return refuse(504, f"clip {key} not ready after {CLIP_TIMEOUT:g} s")
        except Exception as exc:  # the model failed on this batch: say so, keep serving
            log.exception("rendering clip %s failed", key)
            return refuse(500, f"rendering failed: {exc}")
        return Response(found.wav, media_type="audio/wav", headers={"Cache-Control": "private, max-age=3600"})

    @app.post("/api/save")
    async def save(request: Request) -> JSONResponse:
        try:
            body = await body_json(request)
            key = body.get("key") if isinstance(body, dict) else None
            if not isinstance(key, str) or not KEY.match(key):
                raise PlayError("key: expected the 32-hex-digit key of a generated stop")
            wav, side = await run_in_threadpool(engine.save, key, save_dir)
        except PlayError as exc:
            return refuse(exc.status, str(exc))
        return JSONResponse({"wav": str(wav), "sidecar": str(side)}, status_code=201, headers=NO_STORE)

    app.mount("/study-static", StaticFiles(directory=STUDY_STATIC, follow_symlink=False), name="study-static")
    app.mount("/static", StaticFiles(directory=STATIC, follow_symlink=False), name="static")
    return app


def serve(engine: Engine, save_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8001,
          log_level: str = "info") -> None:
    """Run the playground until interrupted."""
    import uvicorn

    app = create_app(engine, save_dir)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: the playground is reachable from other machines", host)
    uvicorn.run(app, host=host, port=int(port), log_level=log_level, server_header=False, access_log=False)


class PlayServer(BackgroundServer):
    """The playground on a free loopback port in a background thread (tests, benchmark,
    screenshot): ``with PlayServer(engine, save_dir) as url: ...``."""

    def __init__(self, engine: Engine, save_dir: str | Path):  # noqa: D107 (the study's __enter__/__exit__)
        self.app = create_app(engine, save_dir)
