"""Checks run by tests/test_serving.py in a process that cannot import replitlm (`python -I -S`, cwd outside the
repo, the environment's packages on sys.path without its .pth files).

    python -I serving_check.py tokenizer FOLDER [EVERY]   stdlib ids: AutoTokenizer vs SentencePiece
    python -I serving_check.py model FOLDER EXPECTED.pt   AutoModelForCausalLM logits vs ours

Each prints one JSON summary on its last line. This file imports only transformers, tokenizers, sentencepiece
and torch: it is what a vLLM/TGI/transformers user has.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
import sysconfig
import time
from pathlib import Path

# -S skipped site-packages and its .pth files (one is the project's editable install): add the folder alone.
sys.path.append(os.environ["SERVING_SITE_PACKAGES"])

SPACE = "\u2581"
# SentencePiece adds path scores in float32 and rebases totals past ±1e5, where float32 steps are 2^-7; two
# segmentations whose exact scores differ by less than a few such steps are told apart by rounding alone.
TIE = 2**-5


def stdlib_sources(every: int) -> dict[str, str]:
    """Every `every`-th .py file of the standard library (as tests/test_tokenizer.py reads them)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = {}
    for path in sorted(stdlib.rglob("*.py"))[::every]:
        if "site-packages" in path.parts:
            continue
        try:
            texts[str(path.relative_to(stdlib))] = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # a few test fixtures are deliberately not UTF-8
    return texts


class Scorer:
    """SentencePiece 0.2.3's scores, to tell a tie broken by rounding from a real difference."""

    def __init__(self, model_file: Path) -> None:
        from sentencepiece import sentencepiece_model_pb2

        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(model_file.read_bytes())
        user_defined = sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED
        self.pieces = [p.piece for p in proto.pieces]
        self.unk_id = proto.trainer_spec.unk_id
        self.scores = [
            0.1 * (len(p.piece.encode()) - 1) if p.type == user_defined else p.score for p in proto.pieces
        ]
        self.single = {p for p in self.pieces if len(p) == 1}

    def ends(self, ids: list[int], normalized: str) -> list[int]:
        """Where each token ends in the normalized text (an unknown token covers a run of unknown chars)."""
        pos, out = 0, []
        for i in ids:
            if i == self.unk_id:
                pos += 1
                while pos < len(normalized) and normalized[pos] not in self.single:
                    pos += 1
            else:
                assert normalized.startswith(self.pieces[i], pos), (
                    self.pieces[i],
                    normalized[pos : pos + 20],
                )
                pos += len(self.pieces[i])
            out.append(pos)
        return out

    def gaps(self, expected: list[int], got: list[int], normalized: str) -> list[float]:
        """Score differences over each stretch of text where the two segmentations differ."""
        ends_a, ends_b = self.ends(expected, normalized), self.ends(got, normalized)
        index_a = {end: i + 1 for i, end in enumerate(ends_a)}
        index_b = {end: i + 1 for i, end in enumerate(ends_b)}
        gaps, start_a, start_b = [], 0, 0
        for end in sorted(set(ends_a) & set(ends_b)):
            a, b = expected[start_a : index_a[end]], got[start_b : index_b[end]]
            if a != b:
                gaps.append(sum(self.scores[i] for i in b) - sum(self.scores[i] for i in a))
            start_a, start_b = index_a[end], index_b[end]
        return gaps


def check_tokenizer(folder: Path, every: int) -> dict:
    import sentencepiece as spm
    from transformers import AutoTokenizer

    start = time.time()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    sp = spm.SentencePieceProcessor(model_file=str(folder / "spiece.model"))
    scorer = Scorer(folder / "spiece.model")
    texts = stdlib_sources(every)
    # Literal "<|endoftext|>" in a file is the special token for a transformers tokenizer, text for raw
    # SentencePiece (as tests/test_tokenizer.py notes); such files are left out.
    special = [name for name, text in texts.items() if any(s in text for s in tokenizer.all_special_tokens)]
    names = [name for name in texts if name not in special]
    fast = tokenizer([texts[n] for n in names], verbose=False)["input_ids"]
    raw = sp.encode([texts[n] for n in names])
    summary = {"class": type(tokenizer).__name__, "files": len(names), "skipped_special": special}
    summary |= {"identical": 0, "tie_files": [], "tie_spans": 0, "max_tie_gap": 0.0, "different": []}
    summary["normalization_differs"] = []
    normalizer = tokenizer.backend_tokenizer.normalizer
    for name, got, expected in zip(names, fast, raw, strict=True):
        text = texts[name]
        if got == expected:
            summary["identical"] += 1
        elif normalizer.normalize_str(text) != sp.normalize(text):
            summary["normalization_differs"].append(
                {"file": name, "round_trips": sp.decode(expected) == text}
            )
        else:
            gaps = scorer.gaps(expected, got, sp.normalize(text))
            largest = max((abs(gap) for gap in gaps), default=math.inf)  # no stretch found: not a tie
            if largest > TIE:
                summary["different"].append({"file": name, "largest_gap": largest})
                continue
            summary["tie_files"].append(name)
            summary["tie_spans"] += len(gaps)
            summary["max_tie_gap"] = max(summary["max_tie_gap"], largest)
    summary["seconds"] = round(time.time() - start, 1)
    return summary


def check_model(folder: Path, expected_file: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    expected = torch.load(expected_file, weights_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = model(expected["input_ids"]).logits
    return {
        "class": type(model).__name__,
        "architectures": model.config.architectures,
        "max_abs_diff": (logits - expected["logits"]).abs().max().item(),
        "tokenizer": type(AutoTokenizer.from_pretrained(folder)).__name__,
    }


def main() -> None:
    # What this check is about: nothing of the project may be found (python -I, cwd outside the repo).
    assert importlib.util.find_spec("replitlm") is None, "replitlm is importable here"
    kind, folder = sys.argv[1], Path(sys.argv[2])
    if kind == "tokenizer":
        summary = check_tokenizer(folder, int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    else:
        summary = check_model(folder, Path(sys.argv[3]))
    summary["replitlm_imported"] = "replitlm" in sys.modules
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
