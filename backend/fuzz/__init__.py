"""Schemathesis over every operation of a live Agentry server; see run.py."""
