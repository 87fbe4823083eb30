"""Quality measurements of exports: held-out perplexity and greedy agreement (``perplexity``).

Torch-free for ONNX exports (numpy, onnxruntime, tokenizers); PyTorch loads only to score a
checkpoint.
"""
