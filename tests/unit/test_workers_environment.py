"""`--workers N`: each worker is a fresh process that reads its settings from the environment, so the
flags given to `polar-mcp` must reach it as variables, unchanged."""

from __future__ import annotations

from polar_mcp.config import load_settings
from polar_mcp.http import environment_of

SECRETS = {
    "POLAR_ACCESS_TOKEN": "polar_oat_operator",
    "POLAR_MCP_SECRET_KEY": "k" * 40,
    "POLAR_MCP_DATABASE_URL": "postgresql://polar:secret@db.internal/polar",
}


def test_flags_reach_every_worker_as_variables_and_secrets_stay_in_the_environment() -> None:
    flags = {
        "transport": "http",
        "auth": "signin",
        "public_url": "https://files.example.com",
        "organization": "ferris-press",
        "trusted_proxies": "10.0.0.0/24,192.0.2.7",
        "database_pool_size": "4",
        "workers": "3",
        "refresh_ttl": "12h",
        "disable_download": True,
        "timeout": "12.5",
    }
    given = load_settings(SECRETS, flags)

    exported = environment_of(given)

    assert load_settings({**SECRETS, **exported}) == given
    assert not set(exported) & set(SECRETS)
    assert exported["POLAR_MCP_TRUSTED_PROXIES"] == "10.0.0.0/24,192.0.2.7/32"
