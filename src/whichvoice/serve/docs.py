"""The API's documentation pages, /docs (Swagger UI) and /redoc (ReDoc), served with their
scripts and styles from this server (the ``fastapi-offline`` package ships them), so they
work with no network: FastAPI's own pages load them from a CDN."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS = "/static/docs"  # where the pages' scripts are served (open, like the page's)
REDOC_JS = "/static/redoc-offline.js"  # ReDoc's script, without its one CDN address
REDOC_CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"  # its "powered by" logo
router = APIRouter(include_in_schema=False)


def assets_dir() -> Path:
    return Path(str(resources.files("fastapi_offline").joinpath("static")))


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="whichvoice API",
        oauth2_redirect_url="/docs/oauth2-redirect",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon.png",
    )


@router.get("/docs/oauth2-redirect")
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    return get_redoc_html(
        openapi_url="/openapi.json",
        title="whichvoice API",
        redoc_js_url=REDOC_JS,
        redoc_favicon_url=f"{ASSETS}/favicon.png",
        with_google_fonts=False,
    )


@functools.cache
def _redoc_script() -> bytes:
    """ReDoc's script with its logo's CDN address emptied: the image fails at once and ReDoc
    shows none (its own fallback), so the page asks nothing of the network."""
    return (assets_dir() / "redoc.standalone.js").read_bytes().replace(REDOC_CDN_LOGO, b"data:,")


@router.get(REDOC_JS)
async def redoc_script() -> Response:
    return Response(
        _redoc_script(),
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=86400"},
    )


def add_docs(app: FastAPI) -> None:
    """The two pages and their assets (mounted before the page's /static)."""
    app.include_router(router)
    app.mount(ASSETS, StaticFiles(directory=assets_dir()), name="docs-assets")
