"""Argument types shared by the commands: a value the command cannot use is an argparse usage error."""
from __future__ import annotations

import argparse


def seed_arg(text: str) -> int:
    """``--seed``: an int in ``[0, 2**63)`` (what ``jax.random.key`` takes)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= v < 2**63:
        raise argparse.ArgumentTypeError(f"expected a seed in [0, 2**63), got {v}")
    return v
