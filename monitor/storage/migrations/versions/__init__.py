"""Provides the migration scripts, one per schema revision, named ``NNNN_what.py``."""
