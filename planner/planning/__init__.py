"""Answering: resolve a question's defaults, estimate a layout, search layouts, size, budget."""
