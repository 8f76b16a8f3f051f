"""Filled in by the API work (issue 3)."""
