"""The one rich console for progress and status: stderr, so stdout carries only results."""

from rich.console import Console

console = Console(stderr=True)
