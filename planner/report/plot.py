"""Cost against time for hardware options, with ranges and the Pareto front (matplotlib)."""

from __future__ import annotations

from pathlib import Path


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both coordinates (lower is better)."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 <= y) and (x2 < x or y2 < y)
                        for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def plain(text: str) -> str:
    """Text that matplotlib shows as written: every '$' escaped, so a name like 'a$x$' is
    never parsed as mathtext (which renders it as math, or fails on bad TeX)."""
    return str(text).replace("\\$", "$").replace("$", "\\$")


def pyplot():
    """matplotlib.pyplot with a file-only backend, or a PlannerError naming the extra."""
    try:
        import matplotlib
    except ImportError:
        from planner.errors import PlannerError
        raise PlannerError("plots need matplotlib: pip install '.[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig, path: str) -> None:
    """Write a figure atomically; the format follows the suffix (.png or .svg)."""
    from planner.fileio import atomic_path

    fmt = Path(path).suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt)


def plot_compare(estimates: list, path: str, title: str,
                 deadline_days: float | None = None, budget_usd: float | None = None) -> None:
    """Write a PNG or SVG: wall-clock days vs cost, error bars from the ranges."""
    fig = compare_figure(estimates, title, deadline_days, budget_usd)
    save(fig, path)
    pyplot().close(fig)


def compare_figure(estimates: list, title: str, deadline_days: float | None = None,
                   budget_usd: float | None = None):
    """Cost against wall-clock days per option, ranges as error bars, Pareto front marked;
    the deadline (a vertical line) and the budget (a horizontal one) when the question has
    them, so a bar crossing the line is an option that misses it in its worst case."""
    plt = pyplot()

    pts = [(e.range.expected.wall_clock_days, e.range.expected.cost_usd) for e in estimates]
    front = set(pareto_front(pts))
    fig, ax = plt.subplots(figsize=(8.5, 5.5), dpi=120)
    markers = "osD^vP*Xh<>"
    for i, e in enumerate(estimates):
        r = e.range
        x, y = pts[i]
        xerr = [[x - r.low.wall_clock_days], [r.high.wall_clock_days - x]]
        yerr = [[(y - r.low.cost_usd) / 1e6], [(r.high.cost_usd - y) / 1e6]]
        on_front = i in front
        label = plain(f"{e.hardware.name}: {e.layout.devices} devices, {x:,.0f} d, "
                      f"${y / 1e6:,.1f}M" + ("  (Pareto)" if on_front else ""))
        ax.errorbar(x, y / 1e6, xerr=xerr, yerr=yerr, fmt=markers[i % len(markers)],
                    markersize=10 if on_front else 7, capsize=4, color=f"C{i % 10}",
                    markeredgecolor="black" if on_front else f"C{i % 10}",
                    markeredgewidth=2 if on_front else 1, alpha=0.85, label=label)
    if len(front) > 1:
        line = sorted(pts[i] for i in front)
        ax.plot([p[0] for p in line], [p[1] / 1e6 for p in line], "--", color="black",
                linewidth=1, label="Pareto front: no option is both faster and cheaper")
    if deadline_days:
        ax.axvline(deadline_days, color="firebrick", linestyle=":", linewidth=1.5,
                   label=f"deadline: {deadline_days:g} days")
    if budget_usd:
        ax.axhline(budget_usd / 1e6, color="firebrick", linestyle="-.", linewidth=1.5,
                   label=plain(f"budget: ${budget_usd / 1e6:,.1f}M"))
    ax.set_xlabel("wall-clock days (bars: best to worst case)")
    ax.set_ylabel("cost, million USD (bars: best to worst case)")
    ax.set_title(plain(title), fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig
