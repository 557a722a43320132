"""Simulator: named random streams, so a window can be drawn in pieces with the same numbers.

The generator draws each quantity (call start seconds, durations, cells ...) as one vectorised
call over every record of the window, all from one ``numpy`` generator, one quantity after the
other. Every such call is *splittable*: drawing ``n`` values in pieces of any size from the same
generator gives the same values (NumPy keeps the spare half of a 64-bit word for 32-bit draws in
the bit generator's state). So a window can be drawn block by block if each quantity has its own
generator, started where the single generator would have started that quantity: that start is
found by replaying the quantities before it (:class:`Cursor`) — drawing those whose consumption
varies (Poisson, normal, exponential, bounded integers) and jumping over those that take exactly
one 64-bit word per value (``random``, ``uniform``).

Code that draws takes a :data:`Draws`: a function from a stream name to the generator to use.
:func:`one_stream` answers the same generator for every name (the whole-window path);
:class:`Streams` answers each name's own generator (the block path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Draws = Callable[[str], np.random.Generator]
CHUNK = 1 << 20  # values per call when a replay draws a stream only to move past it


def one_stream(rng: np.random.Generator) -> Draws:
    """Every stream name draws from ``rng`` (in the order the code asks)."""
    return lambda _name: rng


def at_state(state: dict[str, Any]) -> np.random.Generator:
    """A new generator whose bit generator is in ``state`` (a ``PCG64.state`` dict)."""
    bits = np.random.PCG64()
    bits.state = state
    return np.random.Generator(bits)


class Streams:
    """Stream name -> its own generator, positioned by a :class:`Cursor` replay."""

    def __init__(self, starts: dict[str, dict[str, Any]]) -> None:
        self._gens = {name: at_state(state) for name, state in starts.items()}

    def __call__(self, name: str) -> np.random.Generator:
        return self._gens[name]


class Cursor:
    """Replays the single generator's consumption, noting where each named stream starts.

    Attributes:
        rng: the replayed generator (draw on it for whole-window pieces drawn in place).
        starts: stream name -> the bit generator state at its start.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.starts: dict[str, dict[str, Any]] = {}

    def mark(self, name: str) -> None:
        """Note that stream ``name`` starts here."""
        self.starts[name] = self.rng.bit_generator.state

    def skip(self, name: str, words: int) -> None:
        """Stream ``name`` starts here and takes ``words`` 64-bit words (one per random/uniform)."""
        self.mark(name)
        if words:
            bits = self.rng.bit_generator
            spare = bits.state
            bits.advance(int(words))
            state = bits.state  # advance() drops the spare 32-bit half: a 64-bit draw keeps it
            state["has_uint32"], state["uinteger"] = spare["has_uint32"], spare["uinteger"]
            bits.state = state

    def draw(self, name: str, n: int, draw: Callable[[np.random.Generator, int], Any]) -> None:
        """Stream ``name`` starts here and takes ``n`` values drawn by ``draw(rng, k)`` (discarded)."""
        self.mark(name)
        for lo in range(0, int(n), CHUNK):
            draw(self.rng, min(CHUNK, int(n) - lo))

    def streams(self, *names: str) -> Streams:
        """Generators at the noted starts of ``names`` (all noted streams if none given)."""
        return Streams({k: v for k, v in self.starts.items() if not names or k in names})
