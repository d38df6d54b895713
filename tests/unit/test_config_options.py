"""The option table (environment variables, flags, help) and the `Settings` fields name the same settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

from pydantic import SecretStr

from polar_mcp.config import OPTIONS, Settings

README = (Path(__file__).parents[2] / "README.md").read_text()


def field_types(name: str) -> set[object]:
    annotation = Settings.model_fields[name].annotation
    return set(get_args(annotation)) or {annotation}


def test_every_settings_field_has_exactly_one_option_and_every_option_names_a_field() -> None:
    assert sorted(option.field for option in OPTIONS) == sorted(Settings.model_fields)


def test_environment_variables_and_flags_are_each_used_once() -> None:
    envs = [option.env for option in OPTIONS]
    flags = [option.flag for option in OPTIONS if option.flag is not None]

    assert len(set(envs)) == len(envs)
    assert len(set(flags)) == len(flags)


def test_secrets_are_exactly_the_secret_fields_and_have_no_flag() -> None:
    secret_options = {option.field for option in OPTIONS if option.secret}
    secret_fields = {name for name in Settings.model_fields if SecretStr in field_types(name)}

    assert secret_options == secret_fields
    assert [option.env for option in OPTIONS if option.secret and option.flag is not None] == []


def test_switch_options_are_exactly_the_bool_fields() -> None:
    switches = {option.field for option in OPTIONS if option.switch}
    bool_fields = {name for name in Settings.model_fields if field_types(name) == {bool}}

    assert switches == bool_fields


def test_the_readme_configuration_table_lists_exactly_the_options_with_their_flags() -> None:
    rows = re.findall(r"^\| `(POLAR_[A-Z_]+)` \| ([^|]+) \|", README, flags=re.MULTILINE)

    assert dict(rows) == {
        option.env: "(environment only)" if option.flag is None else f"`{option.flag}`" for option in OPTIONS
    }
