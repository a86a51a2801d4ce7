"""A pure-torch stand-in for the names OpenRLHF 0.11.2 imports from flash-attn at module level.

It is NOT flash-attn: it lets `openrlhf.models` import on a CPU machine so the contract tests can run OpenRLHF's
own reward-model loader. Only tests put it on the path.
"""

__version__ = "0.0.0+standin"
