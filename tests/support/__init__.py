"""Helpers the tests share: imported from here, never from conftest.py (which holds only fixtures)."""
