"""Settings from the YAML file and the environment are coerced by each setting's type."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocinest.registry.config import ConfigError, load_config


def test_values_from_the_environment_take_each_settings_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OCINEST_WORKERS", "3")
    monkeypatch.setenv("OCINEST_GC_GRACE", "15m")
    monkeypatch.setenv("OCINEST_ACCESS_LOG", "off")
    monkeypatch.setenv("OCINEST_HTPASSWD", "")
    monkeypatch.setenv("OCINEST_DATA", "/srv/ocinest")
    config = load_config()
    assert config.workers == 3
    assert config.gc_grace == 900.0
    assert config.access_log is False
    assert config.htpasswd is None
    assert config.data == Path("/srv/ocinest")


@pytest.mark.parametrize(
    ("key", "value"),
    [("access_log", "flase"), ("workers", "two"), ("workers", True), ("gc_grace", "-1s")],
)
def test_a_value_of_the_wrong_kind_is_refused_naming_the_setting(
    tmp_path: Path, key: str, value: object
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"{key}: {value!r}\n" if isinstance(value, str) else f"{key}: true\n")
    with pytest.raises(ConfigError, match=key):
        load_config(config)
