"""vudm: backend/targets."""
