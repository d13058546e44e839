"""ultradet.engine."""
