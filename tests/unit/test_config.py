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


def test_tag_rules_come_from_the_file_or_as_yaml_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "immutable_tags:\n"
        "  - repositories: [rel/**]\n"
        "    tags: ['v[0-9].*']\n"
        "retention:\n"
        "  - repositories: [ci/**]\n"
        "    keep: [{tags: ['v.*'], newest: 3}, {pushed_within: 7d}]\n"
    )
    config = load_config(path)
    assert config.immutable_tags("rel/app", "v1.0") and not config.immutable_tags("ci/a", "v1")
    (rule,) = config.retention.rules
    assert (rule.pattern, [(k.newest, k.pushed_within) for k in rule.keep]) == (
        "ci/**",
        [(3, None), (None, 7 * 86400.0)],
    )
    monkeypatch.setenv("OCINEST_IMMUTABLE_TAGS", '[{"repositories": ["**"], "tags": [".*"]}]')
    assert load_config(path).immutable_tags("ci/a", "anything")
    # Without rules nothing is immutable and retention is off.
    monkeypatch.delenv("OCINEST_IMMUTABLE_TAGS")
    assert not load_config().immutable_tags("rel/app", "v1") and not load_config().retention


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("immutable_tags: {rel: v1}", "immutable_tags: must be a list of rules"),
        ("immutable_tags: [{repositories: [r]}]", r"immutable_tags\[0\].tags must be a list"),
        ("immutable_tags: [{repositories: [r], tags: ['(']}]", "not a regular expression"),
        ("retention: [{repositories: [r], keep: [{newest: -1}]}]", r"retention\[0\].keep\[0\]"),
    ],
)
def test_a_bad_tag_rule_is_refused_naming_the_setting(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path)
