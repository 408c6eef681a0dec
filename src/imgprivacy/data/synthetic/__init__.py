"""Seeded synthetic data sets (FERG-like faces)."""
