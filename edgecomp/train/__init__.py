"""QLoRA training of language adapters (causal LM on unlabeled text) and task adapters (summaries)."""
