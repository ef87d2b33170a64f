"""Real PyTorch runs that check the estimators: build, measure, compare, calibrate.

Modules here import torch lazily; `shrink` is pure and safe to import without torch.
"""

TORCH_HINT = ("this needs torch and codecarbon: pip install torch==2.13.0 && "
              "pip install -e '.[profile]'")


def require_torch():
    """Import torch or raise a PlannerError naming the extra to install."""
    try:
        import torch
    except ImportError:
        from planner.errors import PlannerError
        raise PlannerError(TORCH_HINT) from None
    return torch
