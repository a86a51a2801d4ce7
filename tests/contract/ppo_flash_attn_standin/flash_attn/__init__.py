"""CPU test stand-in for flash_attn (see ../README.md): only the helpers OpenRLHF imports at module level."""

__version__ = "0.0.0+standin"
