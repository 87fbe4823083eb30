"""Resolve a ``--base`` spec to a local HF checkpoint, convert GGUF files, load (optionally NF4)."""
