"""`serendip recommend` and `serendip reload-bundle` against a live service."""

from __future__ import annotations

import pytest
from rich.console import Console
from typer.testing import CliRunner

import retrieval_service.cli as retrieval_cli
from serendip.cli import app
from tests.retrieval_service.conftest import put_record


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrieval_cli, "console", Console(width=250))


def test_recommend_prints_a_table(service, seeded, serving_bundle, wide):
    put_record(seeded, "414", serving_bundle, [4, 8])
    result = CliRunner().invoke(
        app, ["recommend", "414", "--k", "8", "--ratio", "0.25", "--target", service.target]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "record HIT" in out and "novel slots 2" in out
    assert out.count("NOVEL_INTEREST") == 2 and "RELEVANCE" in out
    assert "why cluster 4" in out  # the rationale
    assert serving_bundle.cluster_labels[4] in out
    rows = [line for line in out.splitlines() if "RELEVANCE" in line or "NOVEL_INTEREST" in line]
    assert len(rows) == 8
    # Each row carries the item's title from the bundle.
    for line in rows:
        item_id = line.split("│")[2].strip()
        assert serving_bundle.titles[serving_bundle.item_index[item_id]] in line


def test_recommend_reports_a_bad_argument(service, wide):
    result = CliRunner().invoke(app, ["recommend", "414", "--k", "0", "--target", service.target])
    assert result.exit_code == 2
    assert "INVALID_ARGUMENT" in result.output and "k: must be in 1..500" in result.output


def test_reload_bundle_command(service, wide):
    result = CliRunner().invoke(app, ["reload-bundle", "--target", service.target])
    assert result.exit_code == 0, result.output
    assert "already serving" in result.output
