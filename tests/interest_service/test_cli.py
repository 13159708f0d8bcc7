"""`serendip refresh` through the real CLI (entry-point plugin), with a backend that is down."""

from __future__ import annotations

from prometheus_client import REGISTRY
from typer.testing import CliRunner

from serendip.cli import app
from serendip.store import decode_record, record_key
from serendip.store.record import ProposalSource


def test_refresh_command_seeds_refreshes_and_reports(
    redis_server, redis_client, small_bundle, tmp_path, refresh_config
):
    config = refresh_config()
    before = REGISTRY.get_sample_value("serendip_interest_users_total", {"outcome": "fallback"}) or 0.0
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "refresh",
            "-c",
            str(config),
            "--bundle",
            str(small_bundle.path),
            "--seed-histories",
            "--users",
            "1,2,3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "outcome: fallback" in result.output and "3 users in" in result.output
    rec = decode_record(redis_client.get(record_key("serendip:v1", "2")))
    assert rec.source == ProposalSource.PROPOSAL_SOURCE_TRANSITION and len(rec.interests) == 3
    assert REGISTRY.get_sample_value("serendip_interest_users_total", {"outcome": "fallback"}) == before + 3
    bad = runner.invoke(app, ["refresh", "-c", str(config), "--bundle", str(tmp_path / "nope")])
    assert bad.exit_code == 1
    no_redis = tmp_path / "no-redis.toml"
    no_redis.write_text(config.read_text().replace(f'url = "{redis_server.url}"', ""))
    assert (
        runner.invoke(app, ["refresh", "-c", str(no_redis), "--bundle", str(small_bundle.path)]).exit_code
        == 2
    )
