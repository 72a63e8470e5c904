"""Loss and perplexity of a model on MDS validation shards from data_prep, overall and per language.

Per-language numbers need shards written with `--sequence-id` (they then carry `doc_languages`, the language
of each document in a sample): every predicted token is charged to the language of the document it belongs
to. Without those columns only the overall numbers are reported. The model sees `sequence_id` when its
config attends per document, exactly as in training.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from replitlm.evaluation.tasks import TaskError


def read_mds(folder: Path) -> list[dict]:
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    if not (folder / "index.json").is_file():
        raise TaskError(f"{folder / 'index.json'} not found: give the val/ folder that data_prep wrote")
    clean_stale_shared_memory()
    dataset = StreamingDataset(local=str(folder), shuffle=False, batch_size=1)
    return [dataset[i] for i in range(len(dataset))]


@torch.no_grad()
def perplexity(model: torch.nn.Module, folder: Path, batch_size: int = 8, limit: int | None = None) -> dict:
    """{"overall": {...}, "languages": {name: {...}}} with loss (nats/token), perplexity and tokens."""
    samples = read_mds(folder)[:limit] if limit else read_mds(folder)
    if not samples:
        raise TaskError(f"{folder}: the dataset has no samples")
    per_doc = model.config.attn_config.get("attn_uses_sequence_id", False)
    cut = model.config.max_seq_len  # longer samples are evaluated on their first max_seq_len tokens
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    device = next(model.parameters()).device
    for start in tqdm(range(0, len(samples), batch_size), desc="perplexity", unit="batch"):
        batch = samples[start : start + batch_size]
        ids = torch.from_numpy(np.stack([s["tokens"][:cut].astype(np.int64) for s in batch])).to(device)
        seq = None
        if "sequence_id" in batch[0]:
            seq = torch.from_numpy(np.stack([s["sequence_id"][:cut].astype(np.int64) for s in batch])).to(
                device
            )
        logits = model(input_ids=ids, sequence_id=seq if per_doc else None).logits.float()
        losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none").cpu()
        for row, sample in enumerate(batch):
            sums["overall"] += float(losses[row].sum())
            counts["overall"] += losses.shape[1]
            if "doc_languages" in sample and seq is not None:
                languages = np.array(sample["doc_languages"].split(","))
                target_docs = seq[row, 1:].cpu().numpy()  # the document each predicted token belongs to
                for name in np.unique(languages):
                    mask = torch.from_numpy(np.isin(target_docs, np.flatnonzero(languages == name)))
                    sums[name] += float(losses[row][mask].sum())
                    counts[name] += int(mask.sum())

    def entry(name: str) -> dict:
        loss = sums[name] / counts[name]
        return {"loss": loss, "perplexity": math.exp(loss), "tokens": counts[name]}

    return {
        "overall": entry("overall"),
        "languages": {name: entry(name) for name in sorted(counts) if name != "overall" and counts[name]},
    }
