"""The adapter library shipped inside the package, and summaries made with it without ``--model``.

``adapters/`` holds packed PEFT adapters (``recipes/shipped-library.yaml`` trains and packs them)
and ``library.json``, which names the composition to use for each language. :mod:`.catalog` reads
it and picks a composition for a document's language; :mod:`.exports` builds that composition's
export once into the cache and finds it again without importing PyTorch.
"""
