"""Fine-tune the sentence encoder for one task pack at build time (torch on the CPU).

A frozen all-MiniLM-L6-v2 limits CLINC150: a linear head on its embeddings tops out at ~96 %
in-scope top-1 on dev. Here the encoder itself is trained for the pack's labels: mean-pooled,
L2-normalised embeddings (exactly what both runtimes compute) feed a cosine classifier
(``scale · cos(e, w_c)``) with cross-entropy; the classifier is thrown away afterwards and the
usual head (``models/heads.py``) and scope detector (``models/scope.py``) are trained on the new
embeddings. The result goes through the same export and 8-bit pipeline as the base encoder
(``models/encoder.py``), so the page and CPython load it like any encoder.

Only the rows ``train_head`` does *not* hold out are used, so the held-out fifth that fits the
head's L2, its temperature and both routing thresholds stays unseen by the encoder too;
otherwise those thresholds would be fitted on embeddings the encoder has memorised.
"""

from __future__ import annotations

import math
import shutil
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

Log = Callable[[str], None]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


@dataclass(frozen=True)
class FinetuneConfig:
    """Hyperparameters; all of them are part of the fine-tuned encoder's cache key."""

    epochs: int = 1
    batch_size: int = 32
    lr: float = 8e-5
    # Only the top layers train (the lower ones and the embeddings stay as pretrained): the
    # backward pass then stops halfway, a third less work per step on this 2-core machine.
    train_layers: int = 3
    # Classifier initialised at class means of this many texts per class (not all: one forward
    # pass over the whole set costs a third of an epoch).
    prototype_examples: int = 10
    head_lr: float = 2e-2
    warmup: float = 0.1
    # CLINC150 queries are short (99.9 % ≤ 32 tokens); training on shorter padding is faster.
    max_tokens: int = 32
    scale: float = 20.0
    label_smoothing: float = 0.0
    seed: int = 20240611
    threads: int = 2

    def identity(self) -> str:
        return repr(sorted(asdict(self).items()))


def finetune(src: Path, texts: Sequence[str], labels: Sequence[int], n_classes: int, out: Path,
             config: FinetuneConfig = FinetuneConfig(), log: Log = print) -> dict:
    """Train the encoder in ``src`` (a transformers folder) on ``texts``/``labels`` and save it,
    with its tokenizer files, to ``out``; return what training measured."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(src))
    model = AutoModel.from_pretrained(str(src))
    labels_t = torch.tensor(list(labels))

    def encode(batch: list[str]):
        return tokenizer(batch, padding=True, truncation=True, max_length=config.max_tokens,
                         return_tensors="pt")

    def embed(batch: list[str]):
        feeds = encode(batch)
        hidden = model(**feeds).last_hidden_state
        mask = feeds["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    # The embeddings and lower layers stay as pretrained (most of the vocabulary never occurs
    # in the pack's data; see train_layers).
    layers = model.encoder.layer
    for module in [model.embeddings, *layers[: len(layers) - config.train_layers]]:
        module.requires_grad_(False)
    # Start the classifier at the class means of the base embeddings (prototypes): the first
    # steps then refine a sensible solution instead of moving the encoder towards random ones.
    started = time.monotonic()
    model.eval()
    with torch.no_grad():
        sums = torch.zeros(n_classes, model.config.hidden_size)
        seen_per_class: dict[int, int] = {}
        sample = []
        for i, label in enumerate(labels):
            seen_per_class[label] = seen_per_class.get(label, 0) + 1
            if seen_per_class[label] <= config.prototype_examples:
                sample.append(i)
        order = sorted(sample, key=lambda i: len(texts[i]))
        for i in range(0, len(order), 128):
            idx = order[i : i + 128]
            sums.index_add_(0, labels_t[idx], embed([texts[j] for j in idx]))
    classifier = torch.nn.Parameter(torch.nn.functional.normalize(sums, dim=-1))
    log(f"  fine-tune: prototypes of {len(order):,} texts in {time.monotonic() - started:.0f}s")

    steps_per_epoch = math.ceil(len(texts) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = max(1, int(config.warmup * total))
    optimiser = torch.optim.AdamW([
        {"params": [p for p in model.parameters() if p.requires_grad], "lr": config.lr, "weight_decay": 0.01},
        {"params": [classifier], "lr": config.head_lr, "weight_decay": 0.0},
    ])
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / (total - warmup))))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    model.train()
    step, history = 0, []
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=True,
                                              max_length=config.max_tokens)["input_ids"]]
    for epoch in range(config.epochs):
        running, correct, seen = 0.0, 0, 0
        for idx in _length_batches(lengths, config.batch_size, rng):
            e = embed([texts[j] for j in idx])
            logits = config.scale * e @ torch.nn.functional.normalize(classifier, dim=-1).T
            y = labels_t[idx]
            loss = loss_fn(logits, y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            running += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            if step % 50 == 0 or step == total:
                log(f"  fine-tune: epoch {epoch + 1}/{config.epochs} step {step}/{total} "
                    f"loss {running / seen:.4f} train acc {correct / seen:.4f} "
                    f"({time.monotonic() - started:.0f}s)")
        history.append({"epoch": epoch + 1, "loss": running / seen, "train_accuracy": correct / seen})
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    # The base model's own tokenizer files, byte for byte: fine-tuning changes no token.
    for name in TOKENIZER_FILES:
        shutil.copy2(src / name, out / name)
    return {"examples": len(texts), "steps": total, "history": history,
            "seconds": round(time.monotonic() - started, 1), "config": asdict(config)}


def _length_batches(lengths: list[int], size: int, rng: random.Random) -> list[list[int]]:
    """Batches of texts of similar token length (ties broken at random), in random order: padding
    to each batch's longest text then costs little (random batches padded ~2x the mean length)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    rng.shuffle(batches)
    return batches


# --- the build step: one fine-tuned encoder per task pack that names one (``Task.encoder``) ---

#: Bump when the steps here change what they produce: it is part of the cache key.
FINETUNE_VERSION = "finetune-1"
CONFIG = FinetuneConfig()


def finetuned_packs() -> dict[str, str]:
    """Encoder name → the task pack it is fine-tuned for, for every pack that names one."""
    from pyapp.tasks import TASKS, create_task

    packs: dict[str, str] = {}
    for name in TASKS:
        wanted = getattr(create_task(name), "encoder", None)
        if wanted:
            # Heads sharing one encoder (the telemetry fields) train it together: the first
            # pack names the training set (``_training_split``).
            packs.setdefault(wanted, name)
    return packs


#: Template-labelled heads (``models/fieldheads.py``): log lines are longer than CLINC150's
#: queries (64 tokens cover most), and ~2,700 rows need more than one pass (measured on the
#: telemetry dev lines: see ``pyapp/tasks/telemetry_labels.py`` ENCODER).
TEMPLATE_CONFIG = FinetuneConfig(epochs=3, max_tokens=64)


def _template_heads(task) -> bool:
    from pyapp.tasks.telemetry_labels import TemplateTrainingData

    return isinstance(task.training, TemplateTrainingData)


def config_for(task_name: str) -> FinetuneConfig:
    from pyapp.tasks import create_task

    return TEMPLATE_CONFIG if _template_heads(create_task(task_name)) else CONFIG


def _training_split(task):
    """The pack's training texts and label indices, which rows its head's fitting holds out, and
    the number of classes. Template-labelled heads share one encoder, trained on their three
    fields as one joint label (``fieldheads.finetune_split``)."""
    import numpy as np

    if _template_heads(task):
        from .fieldheads import finetune_split

        return finetune_split(task)

    from .heads import FOLDS, ROUNDS, stratified_folds
    from .trainingdata import read_jsonl, training_rows

    records = read_jsonl(_data_file(task))
    rows = training_rows(task.training, records)
    index = {label: i for i, label in enumerate(task.labels)}
    y = np.array([index[task.training.label_of(records[i])] for i in rows])
    heldout = stratified_folds(y, FOLDS) < ROUNDS
    return [records[i]["text"] for i in rows], y, heldout, len(task.labels)


def _data_file(task) -> Path:
    from .trainingdata import data_root

    path = data_root() / task.training.file
    if not path.exists():
        raise FileNotFoundError(f"training data for {task.name!r} not found: {path} "
                                "(set EDGE_TRIAGE_DATA to the data root)")
    return path


def build_key(task_name: str, config: FinetuneConfig | None = None) -> str:
    """Base model and toolchain (``encoder.build_key``), training data, recipe, held-out split,
    hyperparameters and seed."""
    import json

    from pyapp.tasks import create_task

    from . import encoder, fieldheads, heads
    from .cache import content_key

    task = create_task(task_name)
    config = config or config_for(task_name)
    if _template_heads(task):
        recipe = json.dumps([task.training.identity(), fieldheads.PER_TEMPLATE, fieldheads.FOLDS,
                             fieldheads.HONEST_FOLD])
    else:
        recipe = json.dumps([task.name, list(task.labels), task.training.identity(),
                             heads.FOLDS, heads.ROUNDS, heads.SEED])
    return content_key([FINETUNE_VERSION, encoder.build_key(), _data_file(task), recipe,
                        config.identity()])


def build_finetuned(out: Path, key: str, task_name: str, encoder_name: str,
                    config: FinetuneConfig | None = None, log: Log = print):
    """Fine-tune on the pack's training rows outside the held-out fifth, then export and
    quantise exactly like the base encoder (``encoder.build_encoder``)."""
    import tempfile

    from pyapp.tasks import create_task

    from . import encoder
    from .cache import sha256_file

    task = create_task(task_name)
    config = config or config_for(task_name)
    texts, y, heldout, n_classes = _training_split(task)
    keep = [i for i in range(len(texts)) if not heldout[i]]
    log(f"fine-tuning {encoder.NAME} for {task_name} on {len(keep):,} of {len(texts):,} training "
        f"texts ({config.epochs} epochs, batch {config.batch_size}, {config.threads} threads)")
    with tempfile.TemporaryDirectory() as tmp:
        stats = finetune(encoder.source_dir(), [texts[i] for i in keep], y[keep].tolist(),
                         n_classes, Path(tmp) / "finetuned", config, log)
        log(f"fine-tuned in {stats['seconds']:.0f}s")
        return encoder.build_encoder(
            out, key, log, src=Path(tmp) / "finetuned", name=encoder_name,
            source=f"{encoder.SOURCE}, fine-tuned for {task_name} at build time (models/finetune.py)",
            extra={"provenance": {
                "base": encoder.NAME, "task": task_name, "data": task.training.file,
                "data_sha256": sha256_file(_data_file(task)), "config": config.identity(),
                "finetune_seconds": str(stats["seconds"]),
                "history": repr(stats["history"]),
            }})
