"""Evaluation: benchmark tasks, sandboxed execution of generated code, pass@k."""
