"""Standalone scripts that run in their own tool venvs (not imported by the package)."""
