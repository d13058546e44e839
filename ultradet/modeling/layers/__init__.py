"""Building blocks of the RoI heads: RoI feature extractor, relation module, NTCA aggregation,
optical flow estimators and feature warping."""
