"""A host that leaves a bundle's `${user_config.x}` unfilled passes the reference itself as the value."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from polar_mcp.config import Settings, load_settings


def test_values_still_holding_a_placeholder_count_as_unset_with_one_warning_naming_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    environ = {
        "POLAR_CUSTOMER_SESSION": "${user_config.customer_session}",
        "POLAR_ACCESS_TOKEN": " ${user_config.access_token}\n",
        "POLAR_CUSTOMER_ID": "${user_config.customer_id}",
        "POLAR_MCP_DOWNLOAD_DIR": "${user_config.download_dir}",
        "POLAR_MCP_DISABLE_DOWNLOAD": "${}",
        "POLAR_MCP_TIMEOUT": "12",
    }
    with caplog.at_level(logging.WARNING, logger="polar_mcp.config"):
        settings = load_settings(environ)
    assert settings == Settings(timeout=12)
    assert [(record.levelname, record.getMessage()) for record in caplog.records] == [
        (
            "WARNING",
            "POLAR_CUSTOMER_SESSION, POLAR_ACCESS_TOKEN, POLAR_CUSTOMER_ID, POLAR_MCP_DOWNLOAD_DIR, "
            "POLAR_MCP_DISABLE_DOWNLOAD: still a ${...} placeholder the host left unfilled, so treated as unset",
        )
    ]


def test_filled_values_that_merely_contain_a_dollar_brace_are_kept(caplog: pytest.LogCaptureFixture) -> None:
    environ = {
        "POLAR_MCP_DOWNLOAD_DIR": "/srv/${user}/polar",
        "POLAR_CUSTOMER_SESSION": "polar_cst_${x}",
    }
    with caplog.at_level(logging.WARNING, logger="polar_mcp.config"):
        settings = load_settings(environ)
    assert settings.download_dir == Path("/srv/${user}/polar")
    assert settings.customer_session is not None
    assert settings.customer_session.get_secret_value() == "polar_cst_${x}"
    assert caplog.records == []


def test_settings_without_placeholders_load_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="polar_mcp.config"):
        settings = load_settings({"POLAR_MCP_DISABLE_DOWNLOAD": "false", "POLAR_MCP_DOWNLOAD_DIR": ""})
    assert settings == Settings()
    assert caplog.records == []
