"""Write ``vocabulary.json`` for the shipped adapters, as ``edgecomp train`` now does.

    python tools/adapter_vocabularies.py [edgecomp/library/adapters] [data/zero-shot/mono data/zero-shot/task]

Each adapter's ``edgecomp.json`` names its training file and its sha256; the file must be found,
byte for byte, in one of the data folders. Its vocabulary is the set of ids in the training
examples, built as training built them (the adapter's recorded options, the base's tokenizer, BOS
and EOS), and the example count must match the recorded one. Deterministic: running it again
writes the same files.
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path

from edgecomp.data.tokenizer import load_tokenizer
from edgecomp.data.vocabulary import VOCABULARY, vocabulary_payload
from edgecomp.fsutil import sha256_file, write_json
from edgecomp.model_folder import special_ids
from edgecomp.models.resolve import resolve_base
from edgecomp.train.adapter import TrainOptions, build_examples, read_data


def main() -> None:
    library = Path(sys.argv[1] if len(sys.argv) > 1 else "edgecomp/library/adapters")
    folders = [Path(a) for a in sys.argv[2:]] or [Path("data/zero-shot/mono"), Path("data/zero-shot/task")]
    base = resolve_base(None).path
    tokenizer = load_tokenizer(base)
    ids = special_ids(base)
    bos, eos = ids.bos, (ids.eos[0] if ids.eos else None)
    known = {f.name for f in fields(TrainOptions)}
    for meta_file in sorted(library.glob("*/edgecomp.json")):
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        name = meta_file.parent.name
        data = next((f / meta["data"]["file"] for f in folders if (f / meta["data"]["file"]).is_file()), None)
        if data is None or sha256_file(data) != meta["data"]["sha256"]:
            raise SystemExit(f"{name}: the file it was trained on ({meta['data']['file']}) is not in {folders}")
        options = TrainOptions(**{k: v for k, v in meta["options"].items() if k in known}, data=data, out=Path(name))
        examples = build_examples(options, read_data(options), tokenizer, bos, eos)
        if len(examples) != meta["data"]["examples"]:
            raise SystemExit(f"{name}: {len(examples)} examples, trained on {meta['data']['examples']}")
        payload = vocabulary_payload({i for example, _ in examples for i in example}, tokenizer.get_vocab_size(True))
        write_json(meta_file.parent / VOCABULARY, payload)
        print(f"{name}: {payload['count']} tokens, {len(payload['bitmap'])} bytes of bitmap")


if __name__ == "__main__":
    main()
