"""vudm: backend/dm."""
