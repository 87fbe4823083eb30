"""Text as tokens arrive: emit only what is new and complete.

A token need not end on a character boundary: byte-fallback tokens (``<0xE0>``) carry one byte of
a multi-byte character, and decoding a prefix that stops inside a character yields U+FFFD. The
stream decodes the tokens so far, holds back a trailing U+FFFD (the rest of the character is still
coming) and trailing whitespace (the summary is stripped at the end, so a space only goes out once
text follows it), and hands the callback what was not sent before. Joined, the pieces equal the
final ``decode(...).strip()``.
"""

from __future__ import annotations

from typing import Callable, Sequence

REPLACEMENT = "\ufffd"


class TextStream:
    """Feed token ids one by one (``push``); ``on_text`` gets each new piece of text."""

    def __init__(
        self,
        decode: Callable[[list[int]], str],
        on_text: Callable[[str], None],
        skip_ids: Sequence[int] = (),
    ):
        self.decode = decode
        self.on_text = on_text
        self.skip_ids = set(skip_ids)
        self.tokens: list[int] = []
        self.sent = ""

    def push(self, token: int) -> None:
        if token in self.skip_ids:
            return
        self.tokens.append(token)
        self._emit(final=False)

    def close(self) -> None:
        """Send what was held back (a character that never completed stays U+FFFD)."""
        self._emit(final=True)

    def _emit(self, final: bool) -> None:
        text = self.decode(self.tokens).strip()
        if not final and text.endswith(REPLACEMENT):
            text = text.rstrip(REPLACEMENT).rstrip()
        # Decoding more tokens can in principle rewrite earlier text (a tokenizer's clean-up
        # rules); what was sent cannot be taken back, so send only text that extends it.
        if len(text) > len(self.sent) and text.startswith(self.sent):
            piece, self.sent = text[len(self.sent) :], text
            self.on_text(piece)
