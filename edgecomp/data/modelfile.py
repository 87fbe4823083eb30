"""An Ollama ``Modelfile`` beside a GGUF export or GGUF adapter: the article as the prompt, then
edgecomp's instruction for the composition's prompt; greedy, as ``edgecomp summarize`` decodes by
default."""

from __future__ import annotations

NAME = "Modelfile"


def modelfile(prompt_tail: str, model: str, adapter: str | None = None, max_new_tokens: int = 64) -> str:
    """``FROM model`` (a path Ollama resolves from the Modelfile's folder), ``ADAPTER adapter`` when given."""
    template = "{{ .Prompt }}" + prompt_tail
    lines = [f"FROM {model}", *([f"ADAPTER {adapter}"] if adapter else [])]
    return "\n".join(
        [*lines, f'TEMPLATE """{template}"""', "PARAMETER temperature 0", f"PARAMETER num_predict {max_new_tokens}", ""]
    )
