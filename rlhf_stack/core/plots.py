"""The report's figures: PNG files of one fixed size, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

WIDTH_IN, HEIGHT_IN, DPI = 8.0, 4.5, 100  # every figure is 800 x 450 pixels
SIZE_PX = (int(WIDTH_IN * DPI), int(HEIGHT_IN * DPI))


def _figure(ncols: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, squeeze=False)
    return plt, fig, list(axes[0])


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)  # no bbox_inches="tight": it would change the pixel size
    plt.close(fig)
    return path


def grouped_bars(path: Path, title: str, groups: Sequence[str], series: Mapping[str, Sequence[float | None]],
                 ylabel: str) -> Path:
    """One cluster of bars per group (e.g. a benchmark), one bar per series (e.g. an RM variant); None = no bar."""
    plt, fig, (ax,) = _figure()
    width = 0.8 / max(len(series), 1)
    for k, (name, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(groups))]
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(xs, heights, width, label=name)
        for bar, v in zip(bars, values):
            if v is None:
                bar.set_alpha(0.0)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=15 if len(groups) > 4 else 0)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(plt, fig, path)


def curves(path: Path, title: str, panels: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
           xlabel: str) -> Path:
    """Side-by-side line plots: panel title -> series name -> (x values, y values)."""
    plt, fig, axes = _figure(ncols=max(len(panels), 1))
    for ax, (panel, series) in zip(axes, panels.items()):
        for name, (xs, ys) in series.items():
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=name)
        ax.set_title(panel)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(plt, fig, path)


def histogram(path: Path, title: str, bin_edges: Sequence[float], counts: Sequence[int], xlabel: str) -> Path:
    """A histogram from precomputed bins."""
    plt, fig, (ax,) = _figure()
    widths = [b - a for a, b in zip(bin_edges[:-1], bin_edges[1:])]
    ax.bar(bin_edges[:-1], counts, width=widths, align="edge", edgecolor="black")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.grid(axis="y", alpha=0.3)
    return _save(plt, fig, path)


def horizontal_bars(path: Path, title: str, values: Mapping[str, float], xlabel: str) -> Path:
    """One bar per label (e.g. drops by reason), largest on top."""
    plt, fig, (ax,) = _figure()
    items = sorted(values.items(), key=lambda kv: kv[1])
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    return _save(plt, fig, path)


def interval_lines(path: Path, title: str, xs: Sequence[float | str],
                   series: Mapping[str, Sequence[tuple[float, float | None, float | None] | None]], xlabel: str,
                   ylabel: str) -> Path:
    """One line per series through (mean, low, high) at each x, with the interval as error bars; None = no point.

    Numeric xs are placed at their values (e.g. noise levels); other xs are evenly spaced categories.
    """
    plt, fig, (ax,) = _figure()
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    positions = [float(x) for x in xs] if numeric else list(range(len(xs)))
    span = max(positions) - min(positions) if numeric and len(positions) > 1 else float(len(positions))
    shift = span * 0.015  # keeps overlapping error bars apart
    ax.set_xlim(min(positions) - span * 0.1 - 0.5 * (not numeric), max(positions) + span * 0.1 + 0.5 * (not numeric))
    for k, (name, points) in enumerate(series.items()):
        pts = [(p + (k - (len(series) - 1) / 2) * shift, v) for p, v in zip(positions, points) if v is not None]
        if not pts:
            continue
        mean = [v[0] for _, v in pts]
        below = [v[0] - v[1] if v[1] is not None else 0.0 for _, v in pts]
        above = [v[2] - v[0] if v[2] is not None else 0.0 for _, v in pts]
        ax.errorbar([p for p, _ in pts], mean, yerr=[below, above], marker="o", capsize=4, label=name)
    ax.set_xticks(positions)
    ax.set_xticklabels([str(x) for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def best_of_n_bands(path: Path, title: str, ns: Sequence[int], kl_nats: Sequence[float],
                    series: Mapping[str, Sequence[tuple[float, float | None, float | None] | None]],
                    ylabel: str) -> Path:
    """Best-of-N curves: gold against N (log2 axis, left) and against KL in nats (right), one line per series.

    Each point is (mean, low, high); the interval, where there is one, is drawn as a shaded band. None = no point.
    """
    plt, fig, (by_n, by_kl) = _figure(2)
    for name, points in series.items():
        for ax, xs in ((by_n, ns), (by_kl, kl_nats)):
            pts = [(x, v) for x, v in zip(xs, points) if v is not None]
            if not pts:
                continue
            line, = ax.plot([x for x, _ in pts], [v[0] for _, v in pts], marker="o", label=name)
            banded = [(x, v) for x, v in pts if v[1] is not None and v[2] is not None]
            if banded:
                ax.fill_between([x for x, _ in banded], [v[1] for _, v in banded], [v[2] for _, v in banded],
                                color=line.get_color(), alpha=0.15)
    by_n.set_xscale("log", base=2)
    by_n.set_xticks(list(ns))
    by_n.set_xticklabels([str(n) for n in ns])
    by_n.set_xlabel("N (samples per prompt)")
    by_kl.set_xlabel("KL of best-of-N (nats)")
    for ax in (by_n, by_kl):
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    by_n.set_title(title, fontsize=10)
    by_kl.legend(fontsize=7)
    return _save(plt, fig, path)
