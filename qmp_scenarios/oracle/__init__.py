"""The kernel as oracle: vudm compared with the guest kernel's own device-mapper."""
