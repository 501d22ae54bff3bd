"""docs/operations.md's configuration reference is what the config model says."""

from __future__ import annotations

from writeback_dev import config_reference

from writeback.config import ServiceConfig


def test_the_committed_reference_is_the_generated_one():
    committed = config_reference.section(config_reference.DOC.read_text())
    assert committed == config_reference.render(), "stale: run `python -m writeback_dev.config_reference`"


def test_every_setting_is_in_it_with_nested_ones_under_double_underscores():
    text = config_reference.render()
    for name, field in ServiceConfig.model_fields.items():
        if name in ("retry", "breaker", "kafka", "registry"):
            for nested in field.annotation.model_fields:
                assert f"`WRITEBACK_{name.upper()}__{nested.upper()}`" in text
        else:
            assert f"`WRITEBACK_{name.upper()}`" in text
    assert "| `WRITEBACK_KAFKA__SASL_PASSWORD` | reference: `__ENV` or `__FILE` |" in text
