"""`serendip sft-data`: history-period novel transitions as chat examples (real bundle, real split)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from interest_service.answer import parse_proposal, validate_picks
from interest_service.catalog import UserContext
from interest_service.finetune.check import requests_for
from interest_service.finetune.data import curate, read_sft, user_positives, write_sft
from interest_service.prompt import PromptBuilder
from serendip.data import load_dataset
from serendip.eval.split import split_history_future


@pytest.fixture(scope="module")
def split(small_settings):
    ds = load_dataset("tabular", small_settings.data.path)
    return split_history_future(ds.interactions)


@pytest.fixture
def sft(split, catalog, icfg):
    cfg = icfg(finetune={"max_per_cluster": 4, "max_per_user": 2, "heldout_fraction": 0.2})
    return curate(split.history, catalog, cfg, split_params={}, bundle_period="full"), cfg


def test_examples_come_from_history_positives_only(sft, split):
    examples = sft[0].examples
    assert len(examples) > 50
    hist = split.history
    positives = set(
        zip(
            hist.loc[hist["weight"] >= 4.0, "user_id"].astype(str),
            hist.loc[hist["weight"] >= 4.0, "item_id"].astype(str),
            strict=True,
        )
    )
    future = set(zip(split.future["user_id"].astype(str), split.future["item_id"].astype(str), strict=True))
    cutoff = split.history.groupby("user_id")["timestamp"].max()
    for ex in examples:
        assert (ex.user_id, ex.target_item) in positives
        assert (ex.user_id, ex.target_item) not in future
        assert ex.timestamp <= cutoff[ex.user_id]


def test_targets_are_new_to_the_user_and_lead_the_answer(sft, split, catalog):
    examples, cfg = sft[0].examples, sft[1]
    positives = user_positives(split.history, catalog, cfg.positive_threshold)
    for ex in examples:
        p = positives[ex.user_id]
        t = p.item_ids.index(ex.target_item)
        earlier = {int(c) for c in catalog.item_clusters[p.items[:t]]}
        assert int(catalog.item_clusters[p.items[t]]) == ex.target
        assert ex.target not in earlier and ex.target not in ex.explored
        assert t >= cfg.finetune.min_context
        answer = parse_proposal(ex.messages[2]["content"])
        picks, dropped = validate_picks(answer, catalog.label_to_id, set(ex.explored), cfg.prompt.n_interests)
        assert not dropped and len(picks) == cfg.prompt.n_interests
        assert picks[0].cluster_id == ex.target and picks[0].label == ex.target_label


def test_balance_caps_hold_and_sampling_is_seeded(sft, split, catalog, icfg):
    data, cfg = sft
    per_cluster = Counter(ex.target for ex in data.examples)
    per_user = Counter(ex.user_id for ex in data.examples)
    assert max(per_cluster.values()) <= 4 and max(per_user.values()) <= 2
    assert data.manifest["candidates_per_cluster_max"] > 4  # the cap really bit
    assert data.manifest["n_candidates"] > len(data.examples)
    assert sum(data.manifest["per_cluster"].values()) == len(data.examples)
    assert {ex.split for ex in data.examples} == {"train", "heldout"}
    held_users = {ex.user_id for ex in data.examples if ex.split == "heldout"}
    assert not held_users & {ex.user_id for ex in data.examples if ex.split == "train"}
    again = curate(split.history, catalog, cfg, split_params={}, bundle_period="full")
    assert [e.to_json() for e in again.examples] == [e.to_json() for e in data.examples]
    other = icfg(finetune={"max_per_cluster": 4, "max_per_user": 2, "seed": 8})
    reseeded = curate(split.history, catalog, other, split_params={}, bundle_period="full")
    assert [e.target_item for e in reseeded.examples] != [e.target_item for e in data.examples]


def test_chat_format_round_trips_through_the_prompt_builder(sft, split, catalog, tmp_path):
    data, cfg = sft
    positives = user_positives(split.history, catalog, cfg.positive_threshold)
    builder = PromptBuilder(catalog, cfg.prompt)
    for ex in data.examples[:20]:
        p = positives[ex.user_id]
        t = p.item_ids.index(ex.target_item)
        ids = p.item_ids[max(0, t - cfg.refresh.history_len) : t][::-1]
        req = builder.build(UserContext.build(ex.user_id, ids, catalog, cfg.refresh.transition_recent))
        assert ex.messages[0] == {"role": "system", "content": req.system}
        assert ex.messages[1]["content"] == "\n".join(part.text for part in req.parts if part.kind == "text")
    # Written and read back, then replayed as the refresh would ask: the same prompt and a schema that
    # accepts the training answer (cluster enum = labels new to the user, exact pick count).
    path = tmp_path / "sft.jsonl"
    write_sft(path, data)
    back = read_sft(path)
    assert [e.to_json() for e in back.examples] == [e.to_json() for e in data.examples]
    assert back.manifest["labels"] == catalog.labels
    for ex, req in zip(back.examples[:20], requests_for(back.examples[:20], back.manifest), strict=True):
        assert req.system == ex.messages[0]["content"] and req.parts[0].text == ex.messages[1]["content"]
        answer = json.loads(ex.messages[2]["content"])
        props = req.schema["properties"]
        enum = set(props["interests"]["items"]["properties"]["cluster"]["enum"])
        assert len(answer["interests"]) == props["interests"]["minItems"]
        assert all(pick["cluster"] in enum for pick in answer["interests"])
        assert len(answer["summary"]) <= props["summary"]["maxLength"]


def test_read_sft_names_the_bad_line(sft, tmp_path):
    path = tmp_path / "sft.jsonl"
    write_sft(path, sft[0])
    lines = path.read_text().splitlines()
    lines[2] = '{"messages": []}'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"sft.jsonl, line 3"):
        read_sft(path)


def test_sft_data_command_refuses_a_bundle_that_saw_the_future(small_bundle, small_settings, tmp_path):
    from serendip.cli import app

    out = tmp_path / "sft.jsonl"
    base = ["sft-data", "--bundle", str(small_bundle.path), "--adapter", "tabular"]
    base += ["--data", str(small_settings.data.path), "--out", str(out)]
    refused = CliRunner().invoke(app, base)
    assert refused.exit_code == 2 and "history period" in refused.output and not out.exists()
    ok = CliRunner().invoke(app, [*base, "--allow-full-bundle", "--max-per-cluster", "3"])
    assert ok.exit_code == 0, ok.output
    manifest = json.loads((tmp_path / "sft.manifest.json").read_text())
    assert manifest["bundle_period"] == "full" and manifest["bundle_id"] == small_bundle.bundle_id
    assert max(manifest["per_cluster"].values()) <= 3
    bad = CliRunner().invoke(app, [*base, "--allow-full-bundle", "--max-per-cluster", "0"])
    assert bad.exit_code == 2 and "max_per_cluster" in bad.output
