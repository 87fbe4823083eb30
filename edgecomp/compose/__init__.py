"""Adapter arithmetic: load PEFT LoRA adapters, compose them (method registry), merge into a base."""
