"""Shared tables of test cases: one table per domain fact, read by every test of it."""
