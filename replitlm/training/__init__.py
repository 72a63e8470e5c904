"""Composer training of ReplitLM: typed config, builders, the Composer model wrapper, LionW, callbacks."""
