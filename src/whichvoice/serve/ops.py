"""What operators and browsers ask for: ``/healthz``, ``/metrics`` and the page at ``/``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from whichvoice import __version__
from whichvoice.serve.service import ServiceDep

STATIC = Path(__file__).parent / "static"

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness")
async def healthz(service: ServiceDep) -> dict:
    return {
        "status": "ok",
        "model": service.model.config["model"] if service.model else None,
        "voices": len(service.model.labels) if service.model else 0,
        "version": __version__,
    }


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    # Prometheus's text format, not JSON: what the schema says a client gets (a review)
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(service: ServiceDep) -> Response:
    return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html")
