"""Accuracy over rounds of a network: a line per node, or one band for many nodes.

A line per node (``testnet up``'s plot) stops being readable past a dozen nodes; a
simulated network may have hundreds, drawn as a band: mean, and min to max over nodes.
matplotlib is imported when a plot is drawn, not when ``fednode`` starts.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_accuracy_band", "plot_accuracy_lines"]


def plot_accuracy_band(history: dict[int, list[float]], path: Path, title: str) -> bool:
    """Write a PNG of mean accuracy per round with the min-max range of the nodes shaded.

    Parameters
    ----------
    history
        Round -> every node's accuracy at that round.
    path, title
        Where to write the PNG, and its title.

    Returns
    -------
    bool
        False (nothing written) when ``history`` has no round.
    """
    rounds = sorted(r for r, accs in history.items() if accs)
    if not rounds:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    lo = [min(history[r]) for r in rounds]
    hi = [max(history[r]) for r in rounds]
    mean = [sum(history[r]) / len(history[r]) for r in rounds]
    nodes = len(history[rounds[-1]])
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.fill_between(rounds, lo, hi, alpha=0.25, label=f"min to max of {nodes} nodes")
    # Markers and range bars: with one evaluated round a line or a band draws nothing.
    ax.vlines(rounds, lo, hi, linewidth=1.0, alpha=0.6)
    ax.plot(rounds, mean, marker="o", markersize=3, linewidth=1.5, label="mean")
    if len(rounds) <= 20:
        ax.set_xticks(rounds)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy (local split)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_accuracy_lines(
    history: dict[int, list[tuple[int, float]]],
    path: Path,
    title: str,
    byzantine: frozenset[int] = frozenset(),
) -> bool:
    """Write a PNG with one accuracy line per node (dashed for Byzantine nodes).

    Parameters
    ----------
    history
        Node index -> (round, accuracy) points of that node.
    path, title
        Where to write the PNG, and its title.
    byzantine
        Default empty. Nodes drawn dashed and labelled Byzantine.

    Returns
    -------
    bool
        False (nothing written) when no node has a point.
    """
    points = {i: h for i, h in history.items() if h}
    if not points:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, h in sorted(points.items()):
        rounds, accs = zip(*sorted(dict(h).items()), strict=True)
        if i in byzantine:  # its own accuracy says nothing of the honest nodes'
            ax.plot(rounds, accs, label=f"node {i} (Byzantine)", linewidth=1.2, linestyle="--")
        else:
            ax.plot(rounds, accs, label=f"node {i}", linewidth=1.2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy (local split)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
