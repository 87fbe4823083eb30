"""``edgecomp bench``: how fast an export prefills and decodes, against PyTorch and llama.cpp.

``engines`` wraps each engine behind one timing interface, ``measure`` runs them in their own
processes (peak memory per engine) with interleaved timed runs, ``cli`` is the Typer sub-app.
"""
