"""Tokenizing training data against reading it from the token cache (edgecomp/data/token_cache.py).

    .venv/bin/python benchmarks/token_cache.py --data data/zero-shot/mono/sw.txt [--repeat 8]

Builds a language adapter's examples (packed 512-token blocks) from ``--data`` repeated
``--repeat`` times with the default base's tokenizer, once by tokenizing and once from the cache
entry the first pass wrote, in a fresh EDGECOMP_HOME; prints both times and their ratio.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=8, help="Copies of the data, for a corpus of some size.")
    args = parser.parse_args()
    from edgecomp.models.resolve import resolve_base

    base = resolve_base(None)  # before EDGECOMP_HOME moves: the converted default is cached there
    with tempfile.TemporaryDirectory() as home:
        os.environ["EDGECOMP_HOME"] = home
        corpus = Path(home) / "corpus.txt"
        corpus.write_text(args.data.read_text(encoding="utf-8") * args.repeat, encoding="utf-8")
        from edgecomp.data.token_cache import cached_examples
        from edgecomp.data.tokenizer import load_tokenizer
        from edgecomp.fsutil import sha256_file
        from edgecomp.model_folder import special_ids
        from edgecomp.train.adapter import TrainOptions, build_examples, examples_key, read_data

        o = TrainOptions(kind="language", lang="sw", data=corpus, out=Path(home) / "out")
        tok, ids = load_tokenizer(base.path), special_ids(base.path)
        key = examples_key(o, base.path, sha256_file(corpus), ids.bos, ids.eos[0])
        times = []
        for _ in range(2):
            start = time.perf_counter()
            examples, cached = cached_examples(key, lambda: build_examples(o, read_data(o), tok, ids.bos, ids.eos[0]))
            times.append(time.perf_counter() - start)
        tokens = sum(len(x) for x, _ in examples)
        print(f"{corpus.stat().st_size / 1e6:.1f} MB of text, {len(examples)} blocks, {tokens:,} tokens")
        print(f"tokenize and store: {times[0]:.2f} s; from the cache: {times[1]:.2f} s ({times[0] / times[1]:.1f}x)")


if __name__ == "__main__":
    main()
