"""Checking planner against published and measured runs: throughput tables and the backtest."""
