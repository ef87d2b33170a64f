"""Measuring real runs: energy per component, carbon and cost, a run ledger, extrapolation.

``planner measure -- COMMAND`` (cli/measure.py) and ``planner.measure()`` (api.py) both go
through ``session.Session``. Importing this package loads nothing heavy: codecarbon, pynvml and
sqlite3 are imported by the modules that use them, when a measurement starts.

The package is not called ``planner.measure`` because importing a subpackage binds its name on
the parent package, which would replace the ``planner.measure()`` function.
"""
