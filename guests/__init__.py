"""vudm: guests."""
