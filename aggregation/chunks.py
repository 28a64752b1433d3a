"""Column blocking for coordinate-wise work on (n, d) stacks.

Sorting or selecting along the node axis allocates temporaries as large as the input
(values plus int64 indices: 3x the input for a sort). Working on column blocks caps those
temporaries at tens of MB, which lowers peak memory and avoids page-faulting fresh
100s-of-MB buffers, while each block is still large enough for torch to parallelise one call
over its columns.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["column_blocks"]

# 16 MiB of float32 per block. Much smaller blocks (2**16) were up to 10x slower on the shared
# 2-core build machine: per-call threading overhead dominates when other processes hold the cores.
_BLOCK_ELEMENTS = 1 << 22


def column_blocks(n: int, d: int, *, elements: int = _BLOCK_ELEMENTS) -> Iterator[slice]:
    """Yield column slices covering ``range(d)`` with about ``elements`` entries per block.

    Parameters
    ----------
    n:
        Rows of the stack.
    d:
        Columns of the stack.
    elements:
        Target block size in elements (default 2**22); blocks are at least 256 columns wide.
    """
    width = max(256, elements // max(n, 1))
    for start in range(0, d, width):
        yield slice(start, min(start + width, d))
