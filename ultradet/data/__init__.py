"""ultradet.data: COCO-VID loading, patient folds, validation, the embedded synthetic dataset,
training clips and test frames (docs/architecture.md)."""

from ultradet.data.coco_vid import load_videos
from ultradet.data.errors import DatasetError, DatasetNotFoundError
from ultradet.data.dataset import ClipDataset, build_train_loader, collate_clips, iter_test_frames, resize_for_test
from ultradet.data.folds import carve_validation, fold_of, patient_id, split_by_folds
from ultradet.data.records import FrameRecord, VideoRecord
from ultradet.data.sampler import ClipSampler, MemoryFrameSampler, build_sampler
from ultradet.data.synthetic import generate_dataset
from ultradet.data.validate import DatasetValidationError, validate_dataset

__all__ = [
    "ClipDataset",
    "ClipSampler",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetValidationError",
    "FrameRecord",
    "MemoryFrameSampler",
    "VideoRecord",
    "build_sampler",
    "build_train_loader",
    "carve_validation",
    "collate_clips",
    "fold_of",
    "generate_dataset",
    "iter_test_frames",
    "load_videos",
    "patient_id",
    "resize_for_test",
    "split_by_folds",
    "validate_dataset",
]
