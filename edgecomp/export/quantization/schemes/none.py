"""``none``: the fp32 graph as exported, a tied LM head stored once (``MatMul(x, Transpose(table))``)."""

from .registry import Scheme, register

register(Scheme(name="none", version=8, help="fp32"))
