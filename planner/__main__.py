"""``python -m planner`` and the ``planner`` console script (pyproject.toml names this
module's ``main``): Ctrl-C while the CLI is still importing exits 130 quietly, as later."""

try:
    from planner.cli import main
except KeyboardInterrupt:  # Ctrl-C while the CLI is still importing: quiet, exit 130
    raise SystemExit(130) from None

if __name__ == "__main__":
    main()
