"""vudm: backend."""
