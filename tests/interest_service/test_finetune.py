"""`serendip finetune`: LoRA on a tiny random Llama (SmolLM2's tokenizer), merged by the local backend."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from interest_service.answer import parse_proposal, validate_picks
from interest_service.backends.local import LocalBackend
from interest_service.config import FinetuneConfig, LocalBackendConfig
from interest_service.finetune.check import check_backend, requests_for
from interest_service.finetune.data import curate, write_sft
from interest_service.finetune.train import train_lora
from serendip.data import load_dataset
from serendip.eval.split import split_history_future
from tests.tiny_llama import save_tiny_llama


@pytest.fixture(scope="module")
def tiny_llama(smollm2, tmp_path_factory):
    """A 2-layer random Llama with SmolLM2's tokenizer and chat template, saved as a local checkpoint."""
    tok = smollm2.tokenizer
    return save_tiny_llama(
        tmp_path_factory.mktemp("tiny-llama"),
        tok,
        initializer_range=0.5,  # large enough logits that a LoRA on a 32-wide model can move them
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )


@pytest.fixture(scope="module")
def sft_set(small_settings, catalog):
    from interest_service.config import InterestConfig

    cfg = InterestConfig.model_validate(
        {
            "prompt": {"n_recent": 3},
            "finetune": {"max_per_cluster": 1, "max_per_user": 1, "heldout_fraction": 0.25},
        }
    )
    ds = load_dataset("tabular", small_settings.data.path)
    sft = curate(
        split_history_future(ds.interactions).history, catalog, cfg, split_params={}, bundle_period="full"
    )
    train = [ex for ex in sft.examples if ex.split == "train"][:12]
    held = [ex for ex in sft.examples if ex.split == "heldout"][:4]
    assert len(train) == 12 and len(held) == 4
    sft.examples = train + held
    return sft


@pytest.fixture(scope="module")
def adapter(tiny_llama, sft_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("adapters") / "tiny-sft"
    cfg = FinetuneConfig(epochs=3, batch_size=4, micro_batch=2, lr=2e-2, lora_r=8)
    steps = []
    report = train_lora(
        sft_set.examples,
        out,
        cfg,
        model_path=tiny_llama,
        dtype=torch.float32,
        manifest=sft_set.manifest,
        on_step=lambda s, total, loss: steps.append((s, total, loss)),
    )
    return out, report, steps


def test_finetune_lowers_the_loss_and_writes_an_adapter(adapter):
    out, report, steps = adapter
    assert [s for s, *_ in steps] == list(range(1, 10)) and steps[-1][1] == 9
    assert report.n_train == 12 and report.n_heldout == 4 and len(report.epoch_seconds) == 3
    assert report.train_loss_last < report.train_loss_first - 0.5
    assert report.heldout_loss_after < report.heldout_loss_before - 0.5
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    saved = json.loads((out / "training_report.json").read_text())
    assert saved["step_losses"] == report.step_losses and saved["prefix_tokens"] > 300
    assert json.loads((out / "serendip_adapter.json").read_text())["name"] == "tiny-sft"


def test_local_backend_merges_the_adapter(adapter, tiny_llama, sft_set):
    out, *_ = adapter
    base = LocalBackend(LocalBackendConfig(model_path=tiny_llama, dtype="float32", batch_size=4))
    tuned = LocalBackend(
        LocalBackendConfig(model_path=tiny_llama, dtype="float32", batch_size=4, adapter_path=out)
    )
    assert tuned.model_id == f"{base.model_id}+tiny-sft"
    assert not any("lora" in name for name, _ in tuned.model.named_parameters())  # merged, not wrapped
    ids = base.tokenizer(sft_set.examples[0].messages[1]["content"], return_tensors="pt").input_ids
    with torch.no_grad():
        a, b = base.model(input_ids=ids).logits, tuned.model(input_ids=ids).logits
    assert (a - b).abs().max() > 1e-3
    held = [ex for ex in sft_set.examples if ex.split == "heldout"]
    labels = sft_set.manifest["labels"]
    results = tuned.generate(requests_for(held, sft_set.manifest))
    for ex, res in zip(held, results, strict=True):
        assert res.ok, res.error
        picks, dropped = validate_picks(
            parse_proposal(res.text), {label: i for i, label in enumerate(labels)}, set(ex.explored), 3
        )
        # Schema-valid: every pick is an allowed label (a random model may repeat one; that is dropped).
        assert picks and not dropped["unknown"] and not dropped["in_history"]
        assert len(json.loads(res.text)["interests"]) == 3
    check = check_backend(tuned, held, sft_set.manifest)
    assert check.n == check.valid == 4


def test_missing_adapter_is_a_clear_error(tiny_llama, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"interest\.local\.adapter_path"):
        LocalBackend(LocalBackendConfig(model_path=tiny_llama, dtype="float32", adapter_path=tmp_path))


def test_finetune_command(tiny_llama, sft_set, tmp_path):
    from serendip.cli import app

    data = tmp_path / "sft.jsonl"
    write_sft(data, sft_set)
    out = tmp_path / "cli-adapter"
    args = ["finetune", "--data", str(data), "--out", str(out), "--model-path", str(tiny_llama)]
    result = CliRunner().invoke(app, [*args, "--epochs", "1", "--batch-size", "6"])
    assert result.exit_code == 0, result.output
    assert "held-out loss" in result.output and (out / "adapter_model.safetensors").is_file()
    bad = CliRunner().invoke(app, ["finetune", "--data", str(tmp_path / "none.jsonl"), "--out", str(out)])
    assert bad.exit_code == 2 and "SFT data not found" in bad.output


def test_shared_prefix_gradient_equals_the_plain_full_sequence_gradient(tiny_llama, sft_set):
    """The prefix-sharing trick (prefix_grad = true) is exact: same LoRA gradients as whole sequences."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from interest_service.finetune.train import PrefixTrainer, encode

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"])
    model = get_peft_model(model, lora)
    for name, p in model.named_parameters():  # B starts at zero; make every LoRA weight matter
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    enc = encode(tok, sft_set.examples[:3])

    def grads() -> dict[str, torch.Tensor]:
        out = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        model.zero_grad(set_to_none=True)
        return out

    shared_loss = PrefixTrainer(model, tok, enc, micro_batch=2, prefix_grad=True).step_loss(enc.rows)
    shared = grads()
    total, n = torch.zeros(()), 0
    for context, answer in enc.rows:
        ids = torch.tensor([enc.prefix + context + answer])
        logits = model(input_ids=ids).logits[0, -len(answer) - 1 : -1]
        total = total + torch.nn.functional.cross_entropy(logits, torch.tensor(answer), reduction="sum")
        n += len(answer)
    (total / n).backward()
    plain = grads()
    assert shared_loss == pytest.approx(float(total / n), rel=1e-4)
    for name, g in plain.items():
        assert torch.allclose(shared[name], g, atol=1e-6, rtol=1e-3), name
    # Without prefix gradients the suffix-side part still matches, the prefix-side part is dropped.
    PrefixTrainer(model, tok, enc, micro_batch=2, prefix_grad=False).step_loss(enc.rows)
    approx = grads()
    assert any(not torch.allclose(approx[k], plain[k], atol=1e-6, rtol=1e-3) for k in plain)
