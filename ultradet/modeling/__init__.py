"""ultradet.modeling."""
