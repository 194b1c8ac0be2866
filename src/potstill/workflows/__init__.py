"""Workflows: short compositions of the stages, one per method."""
