"""Data preparation: raw code and instruct data -> tokenized, packed MDS shards (see pipeline.py)."""
