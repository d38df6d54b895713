"""The output schemas the tools publish: derived ahead of time from the present models, as the SDK would."""

from __future__ import annotations

import json

from polar_mcp.config import load_settings
from polar_mcp.server import OUTPUT_SCHEMAS, build_server, derived_output_schema, output_models
from tests.helpers.polar import CUSTOMER_TOKEN
from tests.helpers.snapshot import assert_matches_snapshot


def test_the_published_output_schemas_are_those_the_sdk_derives_from_the_present_models() -> None:
    derived = {name: derived_output_schema(model) for name, model in output_models().items()}

    assert_matches_snapshot(OUTPUT_SCHEMAS, derived)


def test_every_tool_publishes_its_models_schema_and_no_tool_lacks_one() -> None:
    published = json.loads(OUTPUT_SCHEMAS.read_text(encoding="utf-8"))
    server = build_server(load_settings({"POLAR_MCP_TIMEOUT": "5"}), stored_sign_in=True)
    bearer = build_server(load_settings({"POLAR_CUSTOMER_SESSION": CUSTOMER_TOKEN}))
    tools = {tool.name: tool for s in (server, bearer) for tool in s._tool_manager.list_tools()}  # pyright: ignore[reportPrivateUsage]

    assert sorted(tools) == sorted(output_models())
    for name, tool in tools.items():
        assert tool.output_schema == published[name]
