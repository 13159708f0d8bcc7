"""Images reach a real vision-language forward pass: a tiny *random* LLaVA built from a config.

No pretrained VLM can be installed here, so the model is random and its tokenizer is trained on the
spot; what is tested is the plumbing: poster → ImagePolicy → PromptBuilder → LocalBackend
(AutoProcessor) → the vision tower's forward pass, and that the grammar still forces a valid answer.
"""

from __future__ import annotations

import json

import pytest
import torch

from interest_service.answer import parse_proposal

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in m['content'] %}"
    "{% if p['type'] == 'image' %}<image>{% else %}{{ p['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_llava(path, catalog) -> None:
    """A random LLaVA (CLIP vision tower 28×28 → 4 image tokens, 2-layer Llama) + trained tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CLIPImageProcessor,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = (
        list(catalog.titles[:300])
        + catalog.labels
        + ['{"summary":"","interests":[{"cluster":"","reason":""}]}']
    )
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = TEMPLATE
    image_proc = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    processor = LlavaProcessor(
        image_processor=image_proc,
        tokenizer=fast,
        patch_size=14,
        vision_feature_select_strategy="default",
        image_token="<image>",
        num_additional_image_tokens=1,
        chat_template=TEMPLATE,
    )
    config = LlavaConfig(
        vision_config={
            "model_type": "clip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 28,
            "patch_size": 14,
            "projection_dim": 32,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": len(fast),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
        },
        image_token_id=fast.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(path)
    processor.save_pretrained(path)


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory, catalog):
    path = tmp_path_factory.mktemp("tiny-llava")
    build_tiny_llava(path, catalog)
    return path


def test_posters_reach_the_vision_tower(tiny_vlm, small_bundle, catalog, icfg, tmp_path):
    from interest_service.backends.local import LocalBackend
    from interest_service.images import ImagePolicy
    from interest_service.prompt import PromptBuilder

    from .conftest import users_of

    cfg = icfg(
        prompt={"describe": "metadata", "n_recent": 3, "max_summary_chars": 12, "max_reason_chars": 8},
        local={"model_path": str(tiny_vlm), "dtype": "float32"},
    )
    backend = LocalBackend(cfg.local)
    assert backend.is_vlm and backend.supports_images
    users = users_of(small_bundle, catalog, 2)
    # One poster replaced by bytes that are not an image: skipped, counted, the prompt still works.
    bad_root = tmp_path / "posters"
    bad_root.mkdir()
    (bad_root / "broken.jpg").write_bytes(b"not an image at all")
    bad_item = users[1].recent[0]
    catalog_copy = type(catalog).from_bundle(small_bundle)
    catalog_copy.image_uris[bad_item] = str(bad_root / "broken.jpg")
    policy = ImagePolicy(
        cfg.images.model_copy(update={"allowed_roots": [*cfg.images.allowed_roots, bad_root]})
    )
    builder = PromptBuilder(catalog_copy, cfg.prompt, policy, with_images=True)
    requests = [builder.build(u) for u in users]
    assert [r.n_images for r in requests] == [3, 2]
    assert policy.stats["undecodable"] == 1 and policy.stats["loaded"] == 5

    seen: list[tuple[int, ...]] = []
    visual = backend.model.model.vision_tower
    hook = visual.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(tuple(args[0].shape)), with_kwargs=True
    )
    try:
        results = backend.generate(requests)
    finally:
        hook.remove()
    assert seen, "the vision tower never ran"
    assert seen[0] == (5, 3, 28, 28)  # the 5 good posters of the batch, resized by the processor
    assert results[0].extra["pixel_rows"] == 5 and results[0].images_used == 3
    for r, req in zip(results, requests, strict=True):
        assert r.error is None, r.error  # a random model, yet the grammar completes the JSON
        answer = parse_proposal(r.text)
        allowed = req.schema["properties"]["interests"]["items"]["properties"]["cluster"]["enum"]
        assert all(p.cluster in allowed for p in answer.interests), json.dumps(r.text)
