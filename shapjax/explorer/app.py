"""The explorer's HTTP layer: a Starlette app serving the page and the JSON API.

Routes (all answer JSON; a bad request is a 4xx ``{"error": "..."}``, never a 500):

- ``GET /`` the page (``static/index.html``, no CDN: everything is served from here);
- ``GET /api/health`` model, images, settings, number of stored verdicts;
- ``GET /api/next[?image_id=&class=&setting=&wait=&maps=]`` the next image (or that one), its top-5 classes
  and probabilities, the setting the bandit chose and why, and the explanation (data + ``png_url``);
  ``wait`` seconds to wait for a computation (default 0: ``status: "pending"``, poll ``data_url``);
- ``GET /api/explanation?image_id=&class=&setting=[&wait=]`` one explanation (starts it if needed);
- ``GET /api/image.png?image_id=`` / ``GET /api/overlay.png?image_id=&class=&setting=`` the images;
- ``POST /api/feedback`` ``{"image_id", "class", "setting", "verdict": "up"|"down", "regions": [...]}``;
- ``GET /api/feedback[?format=json|csv]`` everything stored (``&download=1`` as a file).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from shapjax.explorer.session import ApiError, Explorer, _check_wait

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
EXTRA = "pip install 'shapjax[explore]'"


def require_web():
    """Import starlette (and uvicorn); raise ImportError naming the ``explore`` extra when missing."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ImportError(f"the explorer needs the optional packages starlette and uvicorn ({e.name} is missing): "
                          f"{EXTRA}") from None


def create_app(explorer: Explorer):
    """The Starlette application over one :class:`Explorer`."""
    require_web()
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from shapjax.explorer.compute import image_png, overlay_png

    ex = explorer

    def _params(request: Request, allowed: set) -> dict:
        q = dict(request.query_params)
        extra = set(q) - allowed
        if extra:
            raise ApiError(f"unknown query parameter(s) {sorted(extra)}; expected {sorted(allowed)}")
        return q

    def _flag(q: dict, name: str, default: bool) -> bool:
        v = q.get(name)
        if v is None:
            return default
        if v.lower() in ("1", "true", "yes"):
            return True
        if v.lower() in ("0", "false", "no"):
            return False
        raise ApiError(f"{name}: expected 0 or 1, got {v!r}")

    def index(request: Request):
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    def health(request: Request):
        return JSONResponse(ex.health())

    def settings(request: Request):
        return JSONResponse({"settings": [s.describe() for s in ex.settings]})

    def images(request: Request):
        return JSONResponse({"images": ex.ids})

    def next_(request: Request):
        q = _params(request, {"image_id", "class", "setting", "wait", "maps"})
        return JSONResponse(ex.next(q.get("image_id"), cls=q.get("class"), setting=q.get("setting"),
                                    wait=q.get("wait", 0), maps=_flag(q, "maps", True)))

    def _target(q: dict):
        i = ex.image_index(q.get("image_id"))
        if "class" not in q:
            raise ApiError("class: required")
        if "setting" not in q:
            raise ApiError("setting: required")
        return i, ex.class_index(q["class"]), ex.setting(q["setting"])

    def explanation(request: Request):
        q = _params(request, {"image_id", "class", "setting", "wait", "maps"})
        i, c, s = _target(q)
        return JSONResponse(ex.explanation(i, c, s, wait=q.get("wait", 0), maps=_flag(q, "maps", True)))

    def image(request: Request):
        q = _params(request, {"image_id"})
        return Response(image_png(ex.images[ex.image_index(q.get("image_id"))]), media_type="image/png")

    def overlay(request: Request):
        q = _params(request, {"image_id", "class", "setting", "wait"})
        i, c, s = _target(q)
        r = ex.result(i, c, s, wait=_check_wait(q.get("wait", 60)))
        return Response(overlay_png(ex.images[i], r), media_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    async def feedback(request: Request):
        if request.method == "GET":
            q = _params(request, {"format", "download"})
            fmt = q.get("format", "json")
            if fmt not in ("json", "csv"):
                raise ApiError(f"format: expected json or csv, got {fmt!r}")
            headers = {"Content-Disposition": f"attachment; filename=feedback.{fmt}"} if _flag(
                q, "download", False) else {}
            if fmt == "csv":
                return Response(ex.store.export_csv(), media_type="text/csv", headers=headers)
            return JSONResponse({"feedback": ex.store.rows()}, headers=headers)
        body = await request.body()
        if len(body) > 1 << 20:
            raise ApiError("body: larger than 1 MiB", 413)
        try:
            payload = json.loads(body or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(f"body: not valid JSON ({e})") from None
        from starlette.concurrency import run_in_threadpool

        return JSONResponse(await run_in_threadpool(ex.feedback, payload))

    async def api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    async def server_error(request: Request, exc: Exception):  # a bug: still JSON, logged
        log.exception("internal error on %s", request.url.path)
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    routes = [
        Route("/", index), Route("/api/health", health), Route("/api/settings", settings),
        Route("/api/images", images), Route("/api/next", next_), Route("/api/explanation", explanation),
        Route("/api/image.png", image), Route("/api/overlay.png", overlay),
        Route("/api/feedback", feedback, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, exception_handlers={ApiError: api_error, HTTPException: http_error,
                                                        Exception: server_error})


def serve(explorer: Explorer, *, host: str = "127.0.0.1", port: int = 8765, log_level: str = "warning") -> None:
    """Run the app with uvicorn until interrupted (blocks)."""
    require_web()
    import uvicorn

    uvicorn.run(create_app(explorer), host=host, port=int(port), log_level=log_level)
