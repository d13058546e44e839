"""ultradet.data."""
