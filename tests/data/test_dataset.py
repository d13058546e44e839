import numpy as np
import pytest
import torch

from ultradet.config import ConfigError, ExperimentConfig, InputConfig, SamplerConfig
from ultradet.data import ClipDataset, build_sampler, build_train_loader, collate_clips, iter_test_frames, load_videos
from ultradet.data.dataset import read_rgb

# Small frames keep the tests fast: train at ~the dataset's own 64 x 64 area.
INPUT = InputConfig(fixed_area_train=64 * 64, scale_train=(0.5, 1.5), fixed_area_test=64 * 64)
SAMPLER = SamplerConfig(interval=8, num_out_frames=4)
# The memory sampler (baselines spec 0): 3 memory frames from the 5 before a local window of 4 in 8.
MEMORY = SamplerConfig(name="memory", interval=8, num_out_frames=4, memory_interval=5, memory_frames=3)
SAMPLERS = pytest.mark.parametrize("sampler", [SAMPLER, MEMORY], ids=["clip", "memory"])


@pytest.fixture(scope="module")
def videos(tiny_dataset):
    return load_videos(tiny_dataset)


def test_clip_contract(videos):
    clip = ClipDataset(videos, input_cfg=INPUT, sampler_cfg=SAMPLER, seed=0)[1]
    images = clip["images"]
    assert images.dtype == torch.float32 and images.ndim == 4 and images.shape[:2] == (4, 3)
    assert 0 <= images.min() and images.max() <= 255 and images.max() > 1  # 0..255, not normalised
    assert clip["video_id"] == videos[1].video_id
    assert clip["frame_ids"].dtype == torch.int64 and torch.all(clip["frame_ids"].diff() >= 0)
    assert len(clip["boxes"]) == len(clip["labels"]) == 4
    h, w = images.shape[2:]
    for boxes, labels in zip(clip["boxes"], clip["labels"]):
        assert boxes.dtype == torch.float32 and boxes.shape[1:] == (4,)
        assert labels.dtype == torch.int64 and labels.shape == (len(boxes),) and torch.all(labels == 0)
        assert torch.all(boxes[:, 2:] > boxes[:, :2]) and torch.all(boxes[:, 2] <= w) and torch.all(boxes[:, 3] <= h)


@SAMPLERS
def test_clip_boxes_match_the_frames_boxes(videos, sampler):
    dataset = ClipDataset(videos, input_cfg=INPUT, sampler_cfg=sampler, seed=0)
    for index in range(len(videos)):
        clip = dataset[index]
        scale = clip["images"].shape[-1] / videos[index].width
        flipped = None
        for fid, boxes in zip(clip["frame_ids"].tolist(), clip["boxes"]):
            source = videos[index].frames[fid].boxes * scale
            assert len(boxes) == len(source)
            if len(boxes):
                same = np.allclose(boxes.numpy(), source, atol=1e-3)
                mirrored = np.allclose(boxes[:, [2, 0]].numpy(), clip["images"].shape[-1] - source[:, [0, 2]], atol=1e-3)
                assert same or mirrored
                flipped = mirrored if flipped is None else flipped
                assert mirrored == flipped  # one flip decision for the whole clip


@SAMPLERS
def test_clips_are_deterministic_per_seed_and_epoch(videos, sampler):
    a = ClipDataset(videos, input_cfg=INPUT, sampler_cfg=sampler, seed=5)
    b = ClipDataset(videos, input_cfg=INPUT, sampler_cfg=sampler, seed=5)
    assert torch.equal(a[2]["images"], b[2]["images"])
    b.set_epoch(1)
    other = b[2]
    assert other["images"].shape != a[2]["images"].shape or not torch.equal(other["images"], a[2]["images"])


def test_memory_clip_is_its_memory_frames_then_its_local_frames(videos):
    dataset = ClipDataset(videos, input_cfg=INPUT, sampler_cfg=MEMORY, seed=0)
    for index, video in enumerate(videos):
        clip = dataset[index]
        frames = clip["frame_ids"].tolist()
        assert clip["images"].shape[0] == len(clip["boxes"]) == len(frames) == MEMORY.clip_frames == 7
        # the sampler's frames for this (seed, video, epoch): the clip's own generator's first draws
        assert frames == build_sampler(MEMORY).sample(video.num_frames, np.random.default_rng([0, index, 0])).tolist()
        memory, local = frames[:3], frames[3:]
        assert max(local) - min(local) < 8 and max(memory) <= max(min(local) - 1, 0)  # memory first, then local


def test_train_loader_batches_and_epochs(videos):
    cfg = ExperimentConfig(input=INPUT, sampler=SAMPLER)
    cfg.solver.clips_per_batch = 2
    cfg.solver.clips_per_worker = 2
    loader = build_train_loader(videos, cfg, seed=0)
    batches = [next(loader) for _ in range(5)]
    assert all(isinstance(b, list) and len(b) == 2 for b in batches)
    first_epoch = [clip["video_id"] for b in batches[:4] for clip in b]
    assert sorted(first_epoch) == sorted(v.video_id for v in videos)  # every video once per epoch
    # draw g of epoch e equals the dataset's clip of that video with epoch e set
    dataset = ClipDataset(videos, input_cfg=INPUT, sampler_cfg=SAMPLER, seed=0)
    index = next(i for i, v in enumerate(videos) if v.video_id == first_epoch[0])
    assert torch.equal(dataset[index]["images"], batches[0][0]["images"])


def test_train_loader_is_worker_independent(videos):
    cfg = ExperimentConfig(input=INPUT, sampler=SAMPLER, dataloader_workers=1)
    with_worker = build_train_loader(videos, cfg, seed=1)
    serial = build_train_loader(videos, cfg.model_copy(update={"dataloader_workers": 0}), seed=1)
    for _ in range(2):
        a, b = next(with_worker)[0], next(serial)[0]
        assert a["video_id"] == b["video_id"] and torch.equal(a["images"], b["images"])


def test_train_loader_from_start_iter_is_the_tail_of_the_full_stream(videos):
    cfg = ExperimentConfig(input=INPUT, sampler=SAMPLER)
    cfg.solver.clips_per_batch = 2
    cfg.solver.clips_per_worker = 2
    full = build_train_loader(videos, cfg, seed=3)
    expected = [next(full) for _ in range(6)][4:]
    resumed = build_train_loader(videos, cfg, seed=3, start_iter=4)
    for want in expected:
        got = next(resumed)
        assert [c["video_id"] for c in got] == [c["video_id"] for c in want]
        assert all(torch.equal(a["images"], b["images"]) for a, b in zip(got, want))


@SAMPLERS
def test_workers_read_disjoint_slices_of_the_same_global_batches(videos, sampler):
    cfg = ExperimentConfig(input=INPUT, sampler=sampler)
    cfg.solver.clips_per_batch = 4
    one = build_train_loader(videos, cfg, seed=2, start_iter=1)  # 1 worker x 1 clip x 4 steps
    ranks = [build_train_loader(videos, cfg, seed=2, start_iter=1, rank=r, world_size=2) for r in (0, 1)]
    for iteration in (1, 2):
        whole = [next(one)[0] for _ in range(4)]
        shards = [next(ranks[r])[0] for r in (0, 1) for _ in range(2)]  # rank 0's two steps, then rank 1's
        assert [c["draw"] for c in whole] == list(range(4 * iteration, 4 * iteration + 4))
        assert [c["draw"] for c in shards] == [c["draw"] for c in whole]
        assert all(torch.equal(a["images"], b["images"]) for a, b in zip(shards, whole))


def test_a_global_batch_that_does_not_split_is_refused(videos):
    cfg = ExperimentConfig(input=INPUT, sampler=SAMPLER)
    cfg.solver.clips_per_batch = 8
    cfg.solver.clips_per_worker = 2
    with pytest.raises(ConfigError, match=r"clips_per_batch \(8\) must be a multiple of train.num_workers \(3\) x "
                       r"solver.clips_per_worker \(2\) = 6"):
        build_train_loader(videos, cfg, seed=0, world_size=3)
    with pytest.raises(ValueError, match=r"multiple of clips_per_worker"):
        ExperimentConfig.model_validate({"solver": {"clips_per_batch": 3, "clips_per_worker": 2}})


def test_train_loader_rejects_no_videos():
    with pytest.raises(ValueError, match="no training videos"):
        build_train_loader([], ExperimentConfig(), seed=0)


def test_collate_is_a_list():
    assert collate_clips(({"a": 1}, {"b": 2})) == [{"a": 1}, {"b": 2}]


def test_test_frames_in_order_and_resized(videos):
    video = videos[0]
    items = list(iter_test_frames(video, fixed_area_test=128 * 128, scale_test=1.0))
    assert [f.frame_id for f, _ in items] == list(range(video.num_frames))
    assert all(img.shape == (3, 128, 128) and img.dtype == torch.float32 for _, img in items)
    frame, image = next(iter_test_frames(video, fixed_area_test=64 * 64, scale_test=1.0))
    assert torch.equal(image, torch.from_numpy(read_rgb(frame)).permute(2, 0, 1).float())


def test_read_rgb_expands_grey_and_checks_size(videos):
    frame = videos[0].frames[0]
    rgb = read_rgb(frame)
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[..., 0], rgb[..., 2])
    bad = type(frame)(**{**frame.__dict__, "height": 32})
    with pytest.raises(ValueError, match="JSON 64x32"):
        read_rgb(bad)
