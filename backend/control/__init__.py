"""vudm: backend/control."""
