"""Tests of rollwise.generation (a package, so that conftest.py's package-scoped vLLM engines close on leaving it)."""
