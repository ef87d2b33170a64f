"""planner: compute, cost and carbon planning for deep-learning training.

The library is the CLI's peer (see planner.api)::

    import planner
    est = planner.estimate(model="llama3-70b", hardware="h100-sxm", devices=2048,
                           tokens="15T", tp=8, pp=4, region="aws:us-east-1")
    est.time.wall_clock_days, est.cost.total_usd, est.carbon.kg_co2e

Names load on first use, so ``import planner`` (and the CLI's start-up) stays light.
"""

__version__ = "0.1.0"

_API = ("estimate", "plan", "compare", "budget", "backtest", "load_hardware", "load_model")
__all__ = ["__version__", *_API, "measure"]


def __getattr__(name: str):
    if name in _API:
        from planner import api

        return getattr(api, name)
    raise AttributeError(f"module 'planner' has no attribute '{name}'")


def measure(*args, **kwargs):
    """Measure a block: ``with planner.measure(label=..., region=...) as m: ...``; ``m.result``.

    Imported on first use, so ``import planner`` loads neither codecarbon nor sqlite3. See
    ``planner.measurement.api.measure`` for the options.
    """
    from planner.measurement.api import measure as _measure

    return _measure(*args, **kwargs)
