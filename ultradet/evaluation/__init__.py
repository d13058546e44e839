"""ultradet.evaluation."""
