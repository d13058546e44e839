"""Building blocks of the RoI heads and the video models: RoI feature extractor, relation module,
NTCA aggregation, optical flow estimators and feature warping, CVA-Net's channel-pair fusion."""
