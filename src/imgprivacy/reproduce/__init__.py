"""The papers' experiments: presets, the papers' numbers, runners writing figures and results."""
