"""vudm: backend/vhost."""
