"""Weight quantization of exported decoders: the schemes, the 4-bit codec, graph rewriting, fp16."""
