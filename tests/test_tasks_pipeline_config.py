"""Unit tests of pipeline config preparation and hashing (no server)."""

from __future__ import annotations

import pytest

from ionworks_prefect import InvalidPipelineConfig, prepare_pipeline
from ionworks_prefect.pipeline_config import config_fingerprint, config_hash, hash_tag, referenced_measurements

from .pipeline_configs import entry_pipeline, fit_pipeline, synthetic


def test_hash_is_stable_and_sensitive_to_content_and_project():
    prepared = prepare_pipeline(entry_pipeline("a"))
    assert config_hash(prepared, "p1") == config_hash(prepare_pipeline(entry_pipeline("a").to_config()), "p1")
    assert config_hash(prepared, "p1") != config_hash(prepared, "p2")
    assert config_hash(prepared, "p1") != config_hash(prepare_pipeline(entry_pipeline("b")), "p1")
    assert hash_tag(config_hash(prepared, "p1")) == f"[ionworks-prefect:{config_hash(prepared, 'p1')[:12]}]"


def test_fingerprint_follows_local_file_content(tmp_path):
    (tmp_path / "ts.csv").write_text(synthetic().write_csv())
    config = fit_pipeline("file:ts.csv")
    before = config_fingerprint(config, tmp_path)
    assert config_fingerprint(config, tmp_path) == before
    synthetic(seed=2).write_csv(tmp_path / "ts.csv")
    assert config_fingerprint(config, tmp_path) != before


def test_inlined_data_is_part_of_the_prepared_config(tmp_path):
    synthetic().write_csv(tmp_path / "ts.csv")
    first = prepare_pipeline(fit_pipeline("file:ts.csv"), tmp_path)
    synthetic(seed=2).write_csv(tmp_path / "ts.csv")
    second = prepare_pipeline(fit_pipeline("file:ts.csv"), tmp_path)
    assert config_hash(first, "p") != config_hash(second, "p")


def test_invalid_configs_name_the_problem():
    with pytest.raises(InvalidPipelineConfig, match="Entry config"):
        prepare_pipeline({"elements": {"known": {"element_type": "entry"}}})
    with pytest.raises(InvalidPipelineConfig, match="ionworks_schema.Pipeline or a dict"):
        prepare_pipeline(["not", "a", "pipeline"])


def test_referenced_measurements_in_order():
    config = {"elements": {"a": {"data": "db:m2"}, "b": [{"data": "db:m1"}, "db:m2"], "c": "file:x.csv"}}
    assert referenced_measurements(config) == ["m2", "m1"]
