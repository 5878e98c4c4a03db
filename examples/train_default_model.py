"""Train attncli's embedded default model, from nothing, in one command.

    python examples/train_default_model.py                      # ~25 min on 2 CPU cores
    python examples/train_default_model.py --steps 1200         # exactly that many steps
    python examples/train_default_model.py --minutes 2 --corpus-mb 1 --out /tmp/tiny

It (1) writes the story corpus (examples/make_corpus.py, fixed seed), (2) trains a
byte-level BPE tokenizer on it with `tokenizers`, (3) trains a small Llama-layout model
(RoPE, RMSNorm, SwiGLU, grouped-query attention, tied embeddings) with attncli's own
Transformer in plain PyTorch, (4) measures validation loss and perplexity on held-out
stories, greedy continuations of held-out openings, and how much each attention head
looks from a pronoun to its antecedent, and (5) saves a Hugging Face model folder
(config.json, model.safetensors, generation_config.json, tokenizer.json,
tokenizer_config.json) plus MODEL_CARD.md into --out, replacing it in one rename.

Budget: with --minutes (default 25) the number of steps is fixed after timing the first
few, so that the cosine schedule ends on time; the model card then records that number,
and `--steps N` repeats the run step for step. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # make_corpus, beside this file
import make_corpus  # noqa: E402

from attncli.checkpoint.load import load_model
from attncli.checkpoint.save import save_pretrained
from attncli.model.build import build_model, resolve_device  # noqa: E402
from attncli.model.config import ModelConfig, RopeConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "attncli" / "data" / "default-model"
EOT = make_corpus.EOT


@dataclass
class Hyper:
    """Everything that decides the model, in one place (and in the model card)."""

    vocab_size: int = 2048  # BPE target; the model's vocab is the tokenizer's, rounded up to 64
    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 512
    max_position_embeddings: int = 2048  # RoPE has no table; trained on seq_len windows
    rope_theta: float = 10000.0
    seq_len: int = 256
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- corpus and tokenizer --------------------------------------------------------------------
def ensure_corpus(folder: Path, size_mb: float, seed: int, valid_stories: int) -> dict:
    """Generate the corpus into ``folder``, or reuse one made there with the same settings."""
    params = {"size_bytes": int(size_mb * 1e6), "valid_stories": valid_stories, "seed": seed}
    stamp = folder / "corpus.json"
    if (folder / "train.txt").is_file() and stamp.is_file() and json.loads(stamp.read_text()) == params:
        log(f"corpus: reusing {folder}")
        return {}
    t0 = time.perf_counter()
    info = make_corpus.write_corpus(folder, size_bytes=params["size_bytes"], valid_stories=valid_stories, seed=seed)
    stamp.write_text(json.dumps(params) + "\n")
    log(f"corpus: {info['train_stories']:,} stories, {info['train_bytes'] / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s")
    return info


def train_tokenizer(stories: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(stories, trainer)
    eot = tok.token_to_id(EOT)
    # Every story in training starts right after <|endoftext|>; so does every prompt.
    tok.post_processor = processors.TemplateProcessing(single=f"{EOT} $A", pair=f"{EOT} $A {EOT} $B",
                                                       special_tokens=[(EOT, eot)])
    return tok


def tokenizer_config() -> dict:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOT,
        "eos_token": EOT,
        "pad_token": EOT,
        "unk_token": None,
        "add_bos_token": False,  # the post-processor in tokenizer.json already adds it
        "add_eos_token": False,
        "model_max_length": Hyper.max_position_embeddings,
        "clean_up_tokenization_spaces": False,
    }


def encode_stream(tok, stories: list[str]) -> torch.Tensor:
    """One long stream: <eot> story <eot> story ... (B=1, the packing source)."""
    eot = tok.token_to_id(EOT)
    ids: list[int] = []
    for enc in tok.encode_batch(stories, add_special_tokens=False):
        ids.append(eot)
        ids.extend(enc.ids)
    ids.append(eot)
    return torch.tensor(ids, dtype=torch.int64)


# ---- model -----------------------------------------------------------------------------------
def model_config(h: Hyper, vocab: int, eot: int) -> ModelConfig:
    return ModelConfig(
        arch="llama", vocab_size=vocab, hidden_size=h.hidden_size, num_layers=h.num_layers,
        num_heads=h.num_heads, num_kv_heads=h.num_kv_heads, intermediate_size=h.intermediate_size,
        max_position_embeddings=h.max_position_embeddings, norm_eps=1e-5, rope=RopeConfig(theta=h.rope_theta),
        tie_word_embeddings=True, bos_token_id=eot, eos_token_ids=[eot], pad_token_id=eot,
    )


def init_weights(model: torch.nn.Module, cfg: ModelConfig) -> None:
    """GPT-2-style: N(0, 0.02), residual outputs scaled down by sqrt(2 * layers)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif p.dim() > 1:
                std = 0.02 / math.sqrt(2 * cfg.num_layers) if name.endswith(("attn.o.weight", "mlp.down.weight")) else 0.02
                p.normal_(0.0, std)
            else:
                p.zero_()


def lr_at(step: int, total: int, h: Hyper) -> float:
    warmup = min(h.warmup_steps, max(1, total // 10))  # short runs warm up for a tenth of their steps
    if step < warmup:
        return h.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return h.lr * (h.min_lr_ratio + (1 - h.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class Batches:
    """Non-overlapping windows of seq_len + 1 tokens, reshuffled every epoch (seeded)."""

    def __init__(self, stream: torch.Tensor, seq_len: int, batch: int, seed: int):
        self.n = (len(stream) - 1) // seq_len
        self.stream, self.seq_len, self.batch = stream, seq_len, batch
        self.gen = torch.Generator().manual_seed(seed)
        self.order, self.pos, self.epoch = torch.randperm(self.n, generator=self.gen), 0, 0

    def next(self) -> torch.Tensor:  # (B, T + 1)
        if self.pos + self.batch > self.n:
            self.order, self.pos = torch.randperm(self.n, generator=self.gen), 0
            self.epoch += 1
        starts = self.order[self.pos : self.pos + self.batch] * self.seq_len
        self.pos += self.batch
        idx = starts[:, None] + torch.arange(self.seq_len + 1)
        return self.stream[idx]


@torch.no_grad()
def evaluate(model, stream: torch.Tensor, seq_len: int, device, max_windows: int | None = None, batch: int = 16) -> float:
    """Mean next-token cross-entropy (nats) over non-overlapping windows of ``stream``."""
    model.eval()
    n = (len(stream) - 1) // seq_len
    if max_windows:
        n = min(n, max_windows)
    total, count = 0.0, 0
    for i in range(0, n, batch):
        starts = torch.arange(i, min(n, i + batch)) * seq_len
        chunk = stream[starts[:, None] + torch.arange(seq_len + 1)].to(device)
        logits = model(chunk[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), chunk[:, 1:].reshape(-1), reduction="sum")
        total, count = total + loss.item(), count + chunk[:, 1:].numel()
    model.train()
    return total / count


@torch.no_grad()
def greedy(model, tok, prompt: str, device, max_new: int = 60) -> str:
    """Greedy continuation, stopping at <|endoftext|>; no cache (the model is tiny)."""
    eot = tok.token_to_id(EOT)
    ids = tok.encode(prompt).ids  # <eot> prompt
    new: list[int] = []
    for _ in range(max_new):
        x = torch.tensor([ids + new], device=device)
        nxt = int(model(x, last_only=True).logits[0, -1].argmax())
        if nxt == eot:
            break
        new.append(nxt)
    return tok.decode(new, skip_special_tokens=False)


def opening(story: str) -> str:
    """A held-out story's first sentence and the first word of its second."""
    first, _, rest = story.partition(". ")
    return f"{first}. {rest.split(' ')[0]}" if rest else first


# ---- does a pronoun look at its antecedent? --------------------------------------------------
def coref_probes(n: int, seed: int) -> list[tuple[str, str, str]]:
    """(text, antecedent noun, distractor noun): two characters of different pronouns,
    then the pronoun of one of them, e.g. "The girl found a dog by the park. It"."""
    rng = random.Random(seed)
    people = make_corpus.HE + make_corpus.SHE
    others = make_corpus.IT_ANIMALS + make_corpus.IT_THINGS + make_corpus.THEY
    out = []
    for _ in range(n):
        p, o = rng.choice(people), rng.choice(others)
        place = rng.choice(make_corpus.PLACES)
        o_desc = f"some {o.noun}" if o.pron == "they" else make_corpus.a(o.noun)
        target, other = (p, o) if rng.random() < 0.5 else (o, p)
        text = f"The {p.noun} found {o_desc} by the {place}. {make_corpus.cap(target.pron)}"
        out.append((text, target.noun, other.noun))
    return out


@torch.no_grad()
def coref_report(model, tok, device, n: int = 200, seed: int = 123) -> dict:
    """For each (layer, head): mean attention weight from the pronoun to the antecedent
    noun, to the distractor noun, and how often the antecedent gets the largest weight."""
    model.eval()
    cfg = model.cfg
    ante = torch.zeros(cfg.num_layers, cfg.num_heads)
    dist = torch.zeros_like(ante)
    top = torch.zeros_like(ante)
    used = 0
    for text, target, other in coref_probes(n, seed):
        enc = tok.encode(text)
        toks = enc.ids
        words = [tok.decode([i]).strip() for i in toks]
        if words.count(target) != 1 or words.count(other) != 1:
            continue  # a noun split into pieces: skip rather than guess
        t_pos, o_pos = words.index(target), words.index(other)
        out = model(torch.tensor([toks], device=device), probe=True)
        for layer, pr in enumerate(out.probes):
            w = pr.weights[0, :, -1].float().cpu()  # (H, S): the pronoun's row
            ante[layer] += w[:, t_pos]
            dist[layer] += w[:, o_pos]
            top[layer] += (w.argmax(-1) == t_pos).float()
        used += 1
    model.train()
    used = max(used, 1)
    ante, dist, top = ante / used, dist / used, top / used
    best = int(ante.argmax())
    return {
        "probes": used,
        "antecedent_weight": ante.tolist(),
        "distractor_weight": dist.tolist(),
        "antecedent_is_argmax": top.tolist(),
        "best": {"layer": best // cfg.num_heads, "head": best % cfg.num_heads,
                 "antecedent_weight": float(ante.flatten()[best]), "distractor_weight": float(dist.flatten()[best]),
                 "antecedent_is_argmax": float(top.flatten()[best])},
    }


# ---- the run ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    h = Hyper()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"model folder to write (default {DEFAULT_OUT.relative_to(REPO)})")
    p.add_argument("--corpus", type=Path, default=None, help="corpus folder (train.txt, valid.txt); made there if absent "
                   "(default: a temporary folder)")
    p.add_argument("--corpus-mb", type=float, default=8.0, help="size of the generated train.txt (default 8)")
    p.add_argument("--corpus-seed", type=int, default=1)
    p.add_argument("--valid-stories", type=int, default=1000, help="held-out stories (default 1000)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=25.0, help="wall-clock budget for the whole run (default 25)")
    budget.add_argument("--steps", type=int, default=None, help="train exactly this many steps (reproduces a run)")
    p.add_argument("--stop-at", type=int, default=None, help="with --steps: stop after this step, as a budget run "
                   "that ran out of time did (the schedule still spans --steps)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    for name in ("batch_size", "seq_len", "lr", "seed"):
        p.add_argument("--" + name.replace("_", "-"), type=type(getattr(h, name)), default=getattr(h, name))
    args = p.parse_args(argv)
    h.batch_size, h.seq_len, h.lr, h.seed = args.batch_size, args.seq_len, args.lr, args.seed

    t_start = time.perf_counter()
    budget_s = None if args.steps else args.minutes * 60
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    random.seed(h.seed)
    torch.manual_seed(h.seed)
    device = resolve_device(args.device)

    # 1-2. corpus and tokenizer
    import tempfile
    tmp = None
    if args.corpus is None:
        tmp = tempfile.TemporaryDirectory(prefix="attncli-corpus-")
        corpus_dir = Path(tmp.name)
    else:
        corpus_dir = args.corpus
    ensure_corpus(corpus_dir, args.corpus_mb, args.corpus_seed, args.valid_stories)
    train_stories = make_corpus.read_stories(corpus_dir / "train.txt")
    valid_stories = make_corpus.read_stories(corpus_dir / "valid.txt")
    corpus_bytes = (corpus_dir / "train.txt").stat().st_size
    t0 = time.perf_counter()
    tok = train_tokenizer(train_stories, h.vocab_size)
    eot = tok.token_to_id(EOT)
    train_ids = encode_stream(tok, train_stories)
    valid_ids = encode_stream(tok, valid_stories)
    vocab = -(-tok.get_vocab_size() // 64) * 64
    log(f"tokenizer: {tok.get_vocab_size():,} tokens (model vocab {vocab}); train {len(train_ids):,} tokens, "
        f"valid {len(valid_ids):,} tokens ({time.perf_counter() - t0:.1f} s)")

    # 3. model
    cfg = model_config(h, vocab, eot)
    model = build_model(cfg, device=device, dtype=torch.float32, random_weights=True)
    init_weights(model, cfg)
    model.tie_weights()
    model.train().requires_grad_(True)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: llama, {n_params:,} parameters, C={cfg.hidden_size} L={cfg.num_layers} H={cfg.num_heads} "
        f"Hkv={cfg.num_kv_heads} D={cfg.head_dim} I={cfg.intermediate_size} V={vocab}; device {device}, "
        f"{args.threads} threads")
    decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in model.named_parameters() if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": h.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:  # one fused kernel per step instead of a dozen ops per tensor (~8% of a step here)
        opt = torch.optim.AdamW(groups, lr=h.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    except (RuntimeError, TypeError):
        opt = torch.optim.AdamW(groups, lr=h.lr, betas=(0.9, 0.95), eps=1e-8)
    batches = Batches(train_ids, h.seq_len, h.batch_size, h.seed)
    tokens_per_step = h.batch_size * h.seq_len

    # Time kept back for the periodic and final evaluations, samples, probes and saving.
    eval_reserve = 0.06 * budget_s + 20 if budget_s is not None else 0.0
    total = args.steps or 10**9
    last = min(total, args.stop_at or total)
    calib_steps = 30  # timed after step 1; the plan keeps 15% in hand for a machine that slows down
    curve: list[tuple[int, float, float]] = []  # (step, train loss, valid loss)
    ema = None
    t_train = time.perf_counter()
    t_calib = None
    step = 0
    stopped_early = None
    while step < last:
        x = batches.next().to(device)
        lr = lr_at(step, total, h)
        for g in opt.param_groups:
            g["lr"] = lr
        logits = model(x[:, :-1], backend="sdpa").logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), h.grad_clip)
        opt.step()
        step += 1
        value = loss.item()
        ema = value if ema is None else 0.95 * ema + 0.05 * value
        if step == 1:
            t_calib = time.perf_counter()  # step 1 warms up allocators and kernels
        if budget_s is not None and step == calib_steps + 1:
            per_step = (time.perf_counter() - t_calib) / calib_steps
            remaining = budget_s - (time.perf_counter() - t_start) - eval_reserve
            total = last = max(step + 1, step + int(remaining / (1.15 * per_step)))
            log(f"budget: {per_step:.2f} s/step -> {total} steps, {total * tokens_per_step / 1e6:.2f}M tokens "
                f"({total * tokens_per_step / len(train_ids):.1f} epochs)")
        every = max(1, min(100, total // 20))
        if step % every == 0 or step == total:
            elapsed = time.perf_counter() - t_train
            tps = step * tokens_per_step / elapsed
            eta = (total - step) * elapsed / step if total < 10**9 else float("nan")
            v = evaluate(model, valid_ids, h.seq_len, device, max_windows=32) if step % (every * 5) == 0 or step == total else float("nan")
            curve.append((step, ema, v))
            log(f"step {step:5d}/{total}  loss {ema:.3f}  {'valid %.3f  ' % v if v == v else ''}lr {lr:.2e}  "
                f"{tps:,.0f} tok/s  elapsed {elapsed / 60:.1f} min  eta {eta / 60:.1f} min")
        if budget_s is not None and step < total and time.perf_counter() - t_start > budget_s - eval_reserve:
            if total >= 10**9:  # out of time before the plan was made: a budget too small to plan in
                total = step
            else:
                log(f"budget reached at step {step} of {total}: stopping early (the machine got slower?)")
                stopped_early = step
            break
    if args.stop_at and step < total:
        stopped_early = step
    train_s = time.perf_counter() - t_train
    steps_done = step

    # 4. evaluation
    t0 = time.perf_counter()
    valid_loss = evaluate(model, valid_ids, h.seq_len, device)
    log(f"validation: loss {valid_loss:.4f} nats/token, perplexity {math.exp(valid_loss):.3f} "
        f"({time.perf_counter() - t0:.1f} s)")
    model.eval()
    samples = [(o, greedy(model, tok, o, device)) for o in (opening(s) for s in valid_stories[:6])]
    samples.insert(0, ("The cat sat on the", greedy(model, tok, "The cat sat on the", device)))
    for prompt, cont in samples:
        log(f"  {prompt!r} -> {cont!r}")
    coref = coref_report(model, tok, device)
    b = coref["best"]
    log(f"coreference: layer {b['layer']} head {b['head']} puts {b['antecedent_weight']:.2f} of the pronoun's attention "
        f"on its antecedent (distractor {b['distractor_weight']:.2f}; antecedent is the argmax in "
        f"{b['antecedent_is_argmax']:.0%} of {coref['probes']} probes)")

    # 5. save: build beside --out, then swap it in
    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    model.requires_grad_(False)
    save_pretrained(model, cfg, stage, dtype=torch.float32)
    tok.save(str(stage / "tokenizer.json"))
    (stage / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(), indent=2) + "\n", encoding="utf-8")
    # the saved folder must load back to the same logits before it replaces anything
    check = load_model(stage, device="cpu")
    probe = valid_ids[: h.seq_len][None]
    with torch.no_grad():
        assert torch.allclose(check.model(probe).logits, model.cpu()(probe).logits, atol=1e-5, rtol=0), "saved model differs"
    facts = dict(
        hyper=asdict(h), n_params=n_params, vocab=vocab, tokenizer_vocab=tok.get_vocab_size(),
        corpus_bytes=corpus_bytes, train_stories=len(train_stories), valid_stories=len(valid_stories),
        train_tokens=len(train_ids), valid_tokens=len(valid_ids), corpus_seed=args.corpus_seed,
        corpus_mb=args.corpus_mb, steps=steps_done, planned_steps=total, stopped_early=stopped_early,
        tokens_seen=steps_done * tokens_per_step,
        train_s=train_s, total_s=time.perf_counter() - t_start, device=describe_device(device, args.threads),
        valid_loss=valid_loss, curve=curve, samples=samples, coref=coref,
        weights_bytes=(stage / "model.safetensors").stat().st_size,
        folder_bytes=sum(f.stat().st_size for f in stage.iterdir()), torch=torch.__version__, threads=args.threads,
    )
    (stage / "MODEL_CARD.md").write_text(model_card(facts), encoding="utf-8")
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(stage, out)
    shutil.rmtree(old, ignore_errors=True)
    if tmp is not None:
        tmp.cleanup()
    log(f"saved {out} ({facts['folder_bytes'] / 1e6:.2f} MB) in {facts['total_s'] / 60:.1f} min in all")
    return 0


def describe_device(device: torch.device, threads: int) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}), {threads} threads"


def model_card(f: dict) -> str:
    h = f["hyper"]
    ppl = math.exp(f["valid_loss"])
    best = f["coref"]["best"]
    rows = "\n".join(f"| {s} | {t:.3f} | {'' if v != v else f'{v:.3f}'} |" for s, t, v in f["curve"])
    samples = "\n".join(f"- **{p}**{c}" for p, c in f["samples"])
    weights = f["coref"]["antecedent_weight"]
    stop = f" --stop-at {f['stopped_early']}" if f["stopped_early"] else ""
    heads = "\n".join(f"| {layer} | " + " | ".join(f"{w:.2f}" for w in row) + " |" for layer, row in enumerate(weights))
    return f"""# attncli default model

A small Llama-layout language model trained from scratch on synthetic children's stories, shipped
inside attncli so that every command works without a download. It knows a few hundred words and
the shapes of the stories it was trained on, nothing else: it is a test subject for attention, not
a general-purpose model.

## Model

| | |
|---|---|
| architecture | `llama` (RoPE, RMSNorm, SwiGLU, grouped-query attention, tied embeddings) |
| parameters | {f['n_params']:,} |
| layers / hidden / MLP | {h['num_layers']} / {h['hidden_size']} / {h['intermediate_size']} |
| heads / kv heads / head dim | {h['num_heads']} / {h['num_kv_heads']} / {h['hidden_size'] // h['num_heads']} |
| vocabulary | {f['tokenizer_vocab']:,} byte-level BPE tokens (embedding rows: {f['vocab']:,}); `<|endoftext|>` is BOS, EOS and PAD |
| context | trained on {h['seq_len']}-token windows; `max_position_embeddings` {h['max_position_embeddings']} (RoPE; quality beyond {h['seq_len']} untested) |
| weights | float32, {f['weights_bytes'] / 1e6:.2f} MB (`model.safetensors`); folder {f['folder_bytes'] / 1e6:.2f} MB |

## Corpus

`examples/make_corpus.py --seed {f['corpus_seed']}`: {f['train_stories']:,} generated stories
({f['corpus_bytes'] / 1e6:.1f} MB, {f['train_tokens']:,} tokens) for training and {f['valid_stories']:,}
held-out stories ({f['valid_tokens']:,} tokens) from an independent stream for validation. A story has
one to three characters, never two with the same pronoun, and what follows a pronoun depends on who
it is ("The dog ... It barked.", "The kite ... It flew high."), so that predicting the next word
needs attention from the pronoun back to its noun.

## Training

Plain PyTorch with attncli's own `Transformer` (SDPA attention): AdamW (betas 0.9/0.95, weight
decay {h['weight_decay']} on matrices), peak learning rate {h['lr']}, {h['warmup_steps']} warm-up steps then cosine
decay to {h['min_lr_ratio']}x, gradient clipping {h['grad_clip']}, batches of {h['batch_size']} x {h['seq_len']} tokens packed from the
token stream, seed {h['seed']}. {f['steps']:,} steps, {f['tokens_seen'] / 1e6:.1f}M tokens
({f['tokens_seen'] / f['train_tokens']:.1f} epochs), {f['train_s'] / 60:.1f} min of training ({f['total_s'] / 60:.1f} min in all) on
{f['device']}, torch {f['torch']}.

| step | train loss (EMA) | validation loss (32 windows) |
|---:|---:|---:|
{rows}

## Evaluation

Validation loss over all {f['valid_tokens']:,} held-out tokens: **{f['valid_loss']:.4f} nats/token, perplexity
{ppl:.3f}**.

Greedy continuations (in bold the prompt; at most 60 new tokens) of held-out story openings and of
the README's prompt:

{samples}

Pronoun to antecedent: over {f['coref']['probes']} probes like "The girl found a dog by the park. It",
the mean attention weight from the pronoun to its antecedent noun, per layer (rows) and head
(columns). Layer {best['layer']}, head {best['head']} puts {best['antecedent_weight']:.2f} on the antecedent and
{best['distractor_weight']:.2f} on the other noun; the antecedent gets its largest weight in
{best['antecedent_is_argmax']:.0%} of the probes.

| layer | {' | '.join(f'head {i}' for i in range(h['num_heads']))} |
|---|{'---|' * h['num_heads']}
{heads}

## Rebuild

From the repository root, with attncli installed (`pip install -e .`):

```bash
python examples/train_default_model.py --steps {f['planned_steps']}{stop} --corpus-mb {f['corpus_mb']:g} --corpus-seed {f['corpus_seed']} --valid-stories {f['valid_stories']} --seed {h['seed']} --batch-size {h['batch_size']} --seq-len {h['seq_len']} --lr {h['lr']} --threads {f['threads']}
```

The same command on the same torch build, device and thread count repeats this run step for step
(for plans of 500 steps or more: a shorter budget run shortens its warm-up once its plan is known).
Without `--steps` it trains for a wall-clock budget (`--minutes`, default 25), planning its number of
steps from the speed of the first 30.
"""


if __name__ == "__main__":
    sys.exit(main())
