"""save_pretrained / ModelConfig.to_hf: our model written in the Hugging Face layout,
read back by attncli and by transformers (the reference) with equal logits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from attncli.errors import BadInputError
from attncli.checkpoint.load import load_model
from attncli.checkpoint.save import save_pretrained
from attncli.model.build import build_model
from attncli.model.config import ModelConfig, RopeConfig
from hf_factory import VARIANTS, hf_config

ROOT = Path(__file__).resolve().parents[2]

LLAMA = dict(arch="llama", vocab_size=96, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2,
             intermediate_size=48, max_position_embeddings=64, tie_word_embeddings=True,
             bos_token_id=0, eos_token_ids=[0], rope=RopeConfig(theta=10000.0))

# Our configs, each one thing the writer must get right.
CONFIGS: dict[str, ModelConfig] = {
    "llama-gqa-tied": ModelConfig(**LLAMA),
    "llama-untied-bias": ModelConfig(**dict(LLAMA, tie_word_embeddings=False, qkv_bias=True, o_bias=True,
                                            mlp_bias=True, num_kv_heads=1)),
    "llama3-rope": ModelConfig(**dict(LLAMA, rope=RopeConfig(theta=500000.0, kind="llama3", factor=8.0,
                                                            original_max_position_embeddings=16))),
    "gpt2": ModelConfig.from_hf(hf_config("gpt2", **VARIANTS["gpt2"][1]).to_dict()),
    "gpt2-untied": ModelConfig.from_hf(hf_config("gpt2", **dict(VARIANTS["gpt2"][1], tie_word_embeddings=False,
                                                                 scale_attn_by_inverse_layer_idx=True)).to_dict()),
    "mistral-window": ModelConfig.from_hf(hf_config("mistral", **VARIANTS["mistral-window"][1]).to_dict()),
    "qwen2-sliding-layers": ModelConfig.from_hf(hf_config("qwen2", **VARIANTS["qwen2-sliding-layers"][1]).to_dict()),
    "qwen3": ModelConfig.from_hf(hf_config("qwen3", **VARIANTS["qwen3"][1]).to_dict()),
    "olmo2": ModelConfig.from_hf(hf_config("olmo2", **VARIANTS["olmo2"][1]).to_dict()),
    **{name: ModelConfig.from_hf(hf_config(VARIANTS[name][0], **VARIANTS[name][1]).to_dict())
       for name in ["gemma2", "gemma3", "pythia", "pythia-sequential", "phi3", "smollm3"]},
}


def random_model(cfg: ModelConfig, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(cfg, device="cpu", dtype=torch.float32, random_weights=True)
    with torch.no_grad():  # random norms and biases too: a tensor written to the wrong name must show
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p) if name.endswith("weight") else 0.1 * torch.randn_like(p))
    return model


def ids_for(cfg: ModelConfig) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, cfg.vocab_size, (2, 12), generator=g)  # (B, T); 12 > the sliding windows


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            cfg = CONFIGS[name]
            model = random_model(cfg)
            folder = tmp_path_factory.mktemp(name)
            save_pretrained(model, cfg, folder)
            cache[name] = (cfg, model, folder)
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(CONFIGS))
def test_config_round_trip(name):
    cfg = CONFIGS[name]
    assert ModelConfig.from_hf(cfg.to_hf()) == cfg
    with_dtype = cfg.with_(dtype="bfloat16")
    assert ModelConfig.from_hf(json.loads(json.dumps(with_dtype.to_hf()))) == with_dtype


@pytest.mark.parametrize("name", list(VARIANTS))
def test_to_hf_inverts_from_hf_on_reference_configs(name):
    model_type, overrides = VARIANTS[name]
    cfg = ModelConfig.from_hf(hf_config(model_type, **overrides).to_dict())
    assert ModelConfig.from_hf(cfg.to_hf()) == cfg


@pytest.mark.parametrize("name", list(CONFIGS))
def test_attncli_reads_back_identical_logits(exported, name):
    cfg, model, folder = exported(name)
    lm = load_model(folder, device="cpu")
    ids = ids_for(cfg)
    with torch.no_grad():
        assert torch.equal(lm.model(ids).logits, model(ids).logits)
    assert lm.config == cfg.with_(dtype="float32")
    assert lm.plan.ignored == [] and lm.plan.dropped == []


@pytest.mark.parametrize("name", list(CONFIGS))
def test_transformers_reads_it_with_equal_logits(exported, name):
    pytest.importorskip("transformers")
    from transformers import AutoModelForCausalLM

    cfg, model, folder = exported(name)
    ref, info = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32,
                                                     output_loading_info=True)
    assert {k: v for k, v in info.items() if v} == {}  # no missing/unexpected/mismatched keys
    assert type(ref).__name__ == cfg.to_hf()["architectures"][0]
    assert ref.config.tie_word_embeddings == cfg.tie_word_embeddings
    ids = ids_for(cfg)
    with torch.no_grad():
        theirs = ref.eval()(input_ids=ids, use_cache=False).logits
        ours = model(ids).logits
    torch.testing.assert_close(ours, theirs)


def test_files_tied_names_and_generation_config(exported):
    from safetensors import safe_open

    cfg, model, folder = exported("llama-gqa-tied")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "generation_config.json", "model.safetensors"]
    with safe_open(folder / "model.safetensors", "pt") as f:
        names = set(f.keys())
        assert f.metadata() == {"format": "pt"}
        assert tuple(f.get_tensor("model.layers.0.self_attn.k_proj.weight").shape) == (cfg.kv_dim, cfg.hidden_size)
    assert "lm_head.weight" not in names and "model.embed_tokens.weight" in names
    assert json.loads((folder / "generation_config.json").read_text()) == {"bos_token_id": 0, "eos_token_id": 0}
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["dtype"] == "float32"
    _, _, gpt2 = exported("gpt2")
    with safe_open(gpt2 / "model.safetensors", "pt") as f:
        assert "transformer.h.0.attn.c_attn.weight" in f.keys() and "lm_head.weight" not in f.keys()


def test_bfloat16_storage(tmp_path):
    cfg = CONFIGS["llama-gqa-tied"]
    model = random_model(cfg)
    save_pretrained(model, cfg, tmp_path, dtype="bfloat16")
    lm = load_model(tmp_path, device="cpu", dtype="bfloat16")
    assert lm.config.dtype == "bfloat16" and lm.model.dtype == torch.bfloat16
    assert torch.equal(lm.model.embed.weight, model.embed.weight.to(torch.bfloat16))
    assert (tmp_path / "model.safetensors").stat().st_size < sum(p.numel() for p in model.parameters()) * 2 + 4096


def test_atomic_write_leaves_no_temp_files_and_replaces(tmp_path):
    cfg = CONFIGS["llama-gqa-tied"]
    save_pretrained(random_model(cfg, seed=1), cfg, tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "old-00001.safetensors"}}))
    (tmp_path / "old-00001.safetensors").write_bytes(b"stale")
    model = random_model(cfg, seed=2)
    written = save_pretrained(model, cfg, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    ids = ids_for(cfg)
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path, device="cpu").model(ids).logits, model(ids).logits)


def test_failed_write_keeps_the_old_files_and_no_temp(tmp_path, monkeypatch):
    import safetensors.torch

    cfg = CONFIGS["llama-gqa-tied"]
    save_pretrained(random_model(cfg, seed=1), cfg, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def boom(state, path, metadata=None):
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(random_model(cfg, seed=2), cfg, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_refuses_what_config_json_cannot_say(tmp_path):
    bad = CONFIGS["llama-gqa-tied"].with_(qkv_bias=True)  # Llama has one switch for q/k/v and o biases
    with pytest.raises(BadInputError, match="o_bias"):
        bad.to_hf()
    with pytest.raises(BadInputError):
        save_pretrained(build_model(bad, device="cpu", dtype=torch.float32, random_weights=True), bad, tmp_path)
    assert list(tmp_path.iterdir()) == []


# ---- the corpus generator of the embedded model (examples/make_corpus.py) ----
def run_corpus(out: Path, *args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "examples" / "make_corpus.py"), "--out", str(out), *args],
                   check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "random"})


def test_corpus_is_deterministic_and_has_coreference(tmp_path):
    run_corpus(tmp_path / "a", "--size-kb", "40", "--valid-stories", "20")
    run_corpus(tmp_path / "b", "--size-kb", "40", "--valid-stories", "20")
    for split in ("train.txt", "valid.txt"):
        assert (tmp_path / "a" / split).read_bytes() == (tmp_path / "b" / split).read_bytes()
    train = (tmp_path / "a" / "train.txt").read_text(encoding="utf-8")
    valid = (tmp_path / "a" / "valid.txt").read_text(encoding="utf-8")
    assert 40_000 <= len(train.encode()) < 44_000
    stories = [s.strip() for s in train.split("<|endoftext|>") if s.strip()]
    assert len(stories) > 50 and not set(stories) & {s.strip() for s in valid.split("<|endoftext|>")}
    sentences = [s for story in stories for s in story.replace("!", ".").replace("?", ".").split(". ")]
    for pronoun in ("It", "He", "She", "They"):
        assert sum(s.startswith(pronoun + " ") for s in sentences) > 10, pronoun
    words = {w.strip('.,!?"').lower() for w in train.replace("<|endoftext|>", " ").split()}
    assert 150 <= len(words) <= 1000
    other = tmp_path / "c"
    run_corpus(other, "--size-kb", "40", "--valid-stories", "20", "--seed", "7")
    assert (other / "train.txt").read_bytes() != (tmp_path / "a" / "train.txt").read_bytes()


# ---- the embedded default model, once it is built (attncli/data/default-model) ----
def _embedded():
    from attncli.checkpoint.files import EMBEDDED_MODEL

    if not (EMBEDDED_MODEL / "config.json").is_file():
        pytest.skip("no embedded model in this checkout (python examples/train_default_model.py builds it)")
    return EMBEDDED_MODEL


def test_embedded_model_loads_in_transformers_with_equal_logits():
    pytest.importorskip("transformers")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from attncli.checkpoint.tokenizer import Tokenizer

    folder = _embedded()
    text = "The cat sat on the mat. It was fluffy."
    ours_tok = Tokenizer.from_dir(folder)
    ids = ours_tok.encode(text)
    assert ids == AutoTokenizer.from_pretrained(folder)(text)["input_ids"]
    assert ours_tok.eos_token_ids == [ids[0]] and ours_tok.decode(ids[1:]) == text  # <|endoftext|> first, once
    ref, info = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32,
                                                     output_loading_info=True)
    assert {k: v for k, v in info.items() if v} == {}
    lm = load_model(folder, device="cpu")
    x = torch.tensor([ids])
    with torch.no_grad():
        torch.testing.assert_close(lm.model(x).logits, ref.eval()(input_ids=x, use_cache=False).logits)
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 10_000_000


@pytest.mark.slow
def test_training_script_end_to_end(tmp_path):
    out = tmp_path / "model"
    subprocess.run([sys.executable, str(ROOT / "examples" / "train_default_model.py"), "--steps", "3",
                    "--corpus-mb", "0.1", "--valid-stories", "20", "--corpus", str(tmp_path / "corpus"),
                    "--out", str(out)], check=True, capture_output=True)
    assert sorted(p.name for p in out.iterdir()) == ["MODEL_CARD.md", "config.json", "generation_config.json",
                                                    "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    lm = load_model(out, device="cpu")
    assert lm.config.arch == "llama" and lm.config.num_kv_heads < lm.config.num_heads and lm.config.tie_word_embeddings
    assert "--steps 3" in (out / "MODEL_CARD.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
