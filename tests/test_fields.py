"""Command-line options from config dataclasses: the CLI's defaults are the dataclass's, every switch flips
its field, and convert_code_dataset.py's command line builds exactly the PipelineConfig it names."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from replitlm.cli.prep import build_parser, config_from_args
from replitlm.data.filters import QualityFilter
from replitlm.data.pipeline import PipelineConfig
from replitlm.fields import add_options, cli, option_values


@dataclass
class Example:
    name: str = field(metadata=cli("what to call it", required=True))
    size: int = field(default=3, metadata=cli("how many"))
    ratio: float = field(default=0.5, metadata=cli("a share", group="numbers"))
    fast: bool = field(default=True, metadata=cli("go slowly", flag="--slow"))
    verbose: bool = field(default=False, metadata=cli("say more"))
    hidden: int = 7  # no option


def test_options_come_from_the_fields() -> None:
    parser = argparse.ArgumentParser()
    add_options(parser, Example)
    assert Example(**option_values(Example, parser.parse_args(["--name", "x"]))) == Example("x")
    given = parser.parse_args(["--name", "y", "--size", "5", "--ratio", "0.25", "--slow", "--verbose"])
    assert option_values(Example, given) == {
        "name": "y",
        "size": 5,
        "ratio": 0.25,
        "fast": False,
        "verbose": True,
    }
    text = parser.format_help()
    assert "how many (default: 3)" in text and "numbers:" in text and "--hidden" not in text


def test_prep_defaults_are_pipeline_config_defaults() -> None:
    required = ["--input", "a", "b", "--out", "o", "--tokenizer", "t.model"]
    assert config_from_args(build_parser().parse_args(required)) == PipelineConfig(["a", "b"], "o", "t.model")
    flags = [
        "--languages",
        "all",
        "--no-license-filter",
        "--compression",
        "none",
        "--quiet",
        "--no-near-dedup",
    ]
    flags += ["--no-quality-filters", "--max-line-length", "80", "--mixture", "python=2"]
    flipped = config_from_args(build_parser().parse_args([*required, *flags]))
    assert flipped.languages is None and flipped.licenses is None and flipped.compression is None
    assert not flipped.progress and not flipped.near_dedup and flipped.exact_dedup
    assert flipped.quality == QualityFilter(enabled=False, max_line_length=80)
    assert flipped.mixture == {"Python": 2.0}
