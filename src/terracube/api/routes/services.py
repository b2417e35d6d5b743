"""Secondary web services: GET /service_types (none are offered yet)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

router = APIRouter(tags=["Secondary Services"])


@router.get("/service_types", operation_id="list-service-types")
def list_service_types() -> dict[str, Any]:
    return {}
