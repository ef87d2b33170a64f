"""planner: compute, cost and carbon planning for deep-learning training.

The library is usable without the CLI::

    import planner
    est = planner.estimate_plan(model="llama3-70b", hardware="h100-sxm", devices=2048,
                                tokens="15T", tp=8, pp=4, region="aws:us-east-1")
    est.time.wall_clock_days, est.cost.total_usd, est.carbon.kg_co2e
"""

__version__ = "0.1.0"

from planner.planning.resolve import estimate, estimate_plan, load_hardware, load_model  # noqa: E402

__all__ = ["__version__", "estimate", "estimate_plan", "load_hardware", "load_model", "measure"]


def measure(*args, **kwargs):
    """Measure a block: ``with planner.measure(label=..., region=...) as m: ...``; ``m.result``.

    Imported on first use, so ``import planner`` loads neither codecarbon nor sqlite3. See
    ``planner.measurement.api.measure`` for the options.
    """
    from planner.measurement.api import measure as _measure

    return _measure(*args, **kwargs)
