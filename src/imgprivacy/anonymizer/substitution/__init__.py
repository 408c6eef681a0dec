"""Substitution: what the anonymizer releases in place of its raw outputs."""
