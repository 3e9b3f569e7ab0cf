"""vudm: backend/devices."""
