"""Write ``vocabulary.json`` for the shipped language adapters, as ``edgecomp train`` now does.

    python tools/adapter_vocabularies.py [edgecomp/library/adapters] [data/zero-shot/mono]

Each language adapter's ``edgecomp.json`` names its training file and its sha256; the file must be
the one in the mono folder, byte for byte. Its vocabulary is the set of ids in the training blocks,
built as training built them (the adapter's ``seq_len``, the base's tokenizer, BOS and EOS).
Deterministic: running it again writes the same files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgecomp.data.examples import language_blocks
from edgecomp.data.readers import read_lines
from edgecomp.data.tokenizer import encoder, load_tokenizer
from edgecomp.data.vocabulary import VOCABULARY, vocabulary_payload
from edgecomp.fsutil import sha256_file, write_json
from edgecomp.model_folder import special_ids
from edgecomp.models.resolve import resolve_base


def main() -> None:
    library = Path(sys.argv[1] if len(sys.argv) > 1 else "edgecomp/library/adapters")
    mono = Path(sys.argv[2] if len(sys.argv) > 2 else "data/zero-shot/mono")
    base = resolve_base(None).path
    tokenizer = load_tokenizer(base)
    ids = special_ids(base)
    bos, eos = ids.bos, (ids.eos[0] if ids.eos else None)
    for meta_file in sorted(library.glob("*/edgecomp.json")):
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("kind") != "language":
            continue
        data = mono / meta["data"]["file"]
        if sha256_file(data) != meta["data"]["sha256"]:
            raise SystemExit(f"{data} is not the file {meta_file.parent.name} was trained on")
        blocks = language_blocks(read_lines(data), encoder(tokenizer), bos, eos, meta["options"]["seq_len"])
        if len(blocks) != meta["data"]["examples"]:
            raise SystemExit(f"{meta_file.parent.name}: {len(blocks)} blocks, trained on {meta['data']['examples']}")
        payload = vocabulary_payload({i for block in blocks for i in block}, tokenizer.get_vocab_size(True))
        write_json(meta_file.parent / VOCABULARY, payload)
        print(f"{meta_file.parent.name}: {payload['count']} tokens, {len(payload['bitmap'])} bytes of bitmap")


if __name__ == "__main__":
    main()
