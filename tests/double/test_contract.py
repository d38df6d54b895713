"""The double's answers against the OpenAPI excerpt's schemas (faults off), with jsonschema."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from polar_mcp.double.seed import synthetic_store
from polar_mcp.double.store import Store
from tests.double.helpers import LIST, asgi_client, bearer, benefit_id
from tests.helpers.clock import ManualClock

pytestmark = pytest.mark.anyio

SPEC_PATH = Path(__file__).parent.parent / "openapi" / "list-downloadables.openapi.json"
SPEC: dict[str, Any] = json.loads(SPEC_PATH.read_text())
SPEC_URI = "urn:polar:list-downloadables"

_formats = FormatChecker()


@_formats.checks("uuid4", raises=ValueError)
def _is_uuid(value: object) -> bool:
    # Lenient: the excerpt says uuid4, Polar's own ids are UUIDs of any version.
    return not isinstance(value, str) or bool(uuid.UUID(value))


@_formats.checks("date-time", raises=ValueError)
def _is_datetime(value: object) -> bool:
    return not isinstance(value, str) or bool(datetime.fromisoformat(value))


def validator(schema_name: str) -> Draft202012Validator:
    # OpenAPI 3.1 schemas are JSON Schema 2020-12, but the document itself declares no $schema.
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(SPEC))
    schema = {"$ref": f"{SPEC_URI}#/components/schemas/{schema_name}"}
    return Draft202012Validator(schema, registry=registry, format_checker=_formats)


def violations(schema_name: str, body: Any) -> list[str]:
    errors: list[ValidationError] = sorted(validator(schema_name).iter_errors(body), key=str)
    return [f"{list(e.absolute_path)}: {e.message}" for e in errors]


@pytest.mark.parametrize("params", [{}, {"limit": 100}, {"page": 2, "limit": 3}, {"page": 40}])
async def test_listings_match_the_list_resource_schema(
    client: httpx2.AsyncClient, ada_token: str, params: dict[str, int]
) -> None:
    response = await client.get(LIST, params=params, headers=bearer(ada_token))

    assert response.status_code == 200
    assert violations("ListResource_DownloadableRead_", response.json()) == []


async def test_a_filtered_listing_matches_the_schema(client: httpx2.AsyncClient, store: Store, ada_token: str) -> None:
    params = {"benefit_id": [benefit_id(store, "Wallpaper Pack"), benefit_id(store, "Code Samples")]}

    response = await client.get(LIST, params=params, headers=bearer(ada_token))

    assert violations("ListResource_DownloadableRead_", response.json()) == []


async def test_a_synthetic_listing_matches_the_schema(clock: ManualClock) -> None:
    store = synthetic_store(items=300, benefits=7, clock=clock)
    token = store.issue_session(next(iter(store.customers.values())).id)
    async with asgi_client(store) as client:
        response = await client.get(LIST, params={"limit": 100, "page": 2}, headers=bearer(token))

    assert violations("ListResource_DownloadableRead_", response.json()) == []


@pytest.mark.parametrize(
    "params",
    [{"page": 0}, {"limit": 0}, {"limit": "abc"}, {"benefit_id": "nope"}, {"page": -1, "limit": "1.5"}],
)
async def test_validation_errors_match_the_http_validation_error_schema(
    client: httpx2.AsyncClient, ada_token: str, params: dict[str, int | str]
) -> None:
    response = await client.get(LIST, params=params, headers=bearer(ada_token))

    assert response.status_code == 422
    assert violations("HTTPValidationError", response.json()) == []


async def test_drift_is_caught_by_the_excerpt_only_where_polar_really_drifts(
    client: httpx2.AsyncClient, store: Store, ada_token: str
) -> None:
    store.faults.update({"drift": True})

    response = await client.get(LIST, params={"limit": 1}, headers=bearer(ada_token))

    # The excerpt's enum lacks `support_case_attachment`; nulls and extra fields are within it.
    assert violations("ListResource_DownloadableRead_", response.json()) == [
        "['items', 0, 'file', 'service']: 'support_case_attachment' is not one of "
        "['downloadable', 'product_media', 'organization_avatar']"
    ]


def test_the_json_copy_of_the_excerpt_is_the_yaml_excerpt() -> None:
    excerpt = Path("/work/shared/polar-api/list-downloadables.openapi.yaml")
    if not excerpt.exists():
        pytest.skip("the shared YAML excerpt is not on this machine")
    text = excerpt.read_text()

    assert SPEC["paths"]["/v1/customer-portal/downloadables/"]["get"]["operationId"] in text
    assert sorted(SPEC["components"]["schemas"]) == sorted(
        line.strip().rstrip(":")
        for line in text.split("  schemas:\n", 1)[1].split("  securitySchemes:")[0].splitlines()
        if line.startswith("    ") and not line.startswith("     ")
    )


async def test_the_schema_check_catches_a_broken_listing(client: httpx2.AsyncClient, ada_token: str) -> None:
    body = (await client.get(LIST, params={"limit": 1}, headers=bearer(ada_token))).json()
    file = body["items"][0]["file"]
    del file["checksum_etag"]
    file["id"] = "not-a-uuid"
    file["download"]["expires_at"] = "tomorrow"

    assert set(violations("ListResource_DownloadableRead_", body)) == {
        "['items', 0, 'file', 'download', 'expires_at']: 'tomorrow' is not a 'date-time'",
        "['items', 0, 'file', 'id']: 'not-a-uuid' is not a 'uuid4'",
        "['items', 0, 'file']: 'checksum_etag' is a required property",
    }
