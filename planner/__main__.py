"""``python -m planner``: the same entry point as the ``planner`` console script."""

try:
    from planner.cli import main
except KeyboardInterrupt:  # Ctrl-C while the CLI is still importing: quiet, exit 130
    raise SystemExit(130) from None

if __name__ == "__main__":
    main()
