"""vudm: qmp_scenarios."""
