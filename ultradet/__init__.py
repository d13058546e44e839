"""UltraDet: real-time lesion detection in ultrasound video, with negative temporal context
aggregation (Yu et al., MICCAI 2023), on torchvision."""

__version__ = "0.1.0"
