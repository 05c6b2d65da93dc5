"""Data sources and the in-memory tensor pipeline."""
