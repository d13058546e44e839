import numpy as np

from ultradet.engine.batches import DrawDataset, batch_stream


def fake_clip(video_index, rng):
    return {"video": video_index, "noise": float(rng.random())}


def take(stream, start, n):
    it = stream(start)
    return [next(it) for _ in range(n)]


def test_each_epoch_visits_every_video_once():
    ds = DrawDataset(fake_clip, num_videos=5, seed=3)
    for epoch in range(3):
        assert sorted(ds.video_index(epoch * 5 + i) for i in range(5)) == list(range(5))
    assert [ds.video_index(i) for i in range(5)] != [ds.video_index(5 + i) for i in range(5)]


def test_stream_from_start_iter_equals_tail_of_full_stream():
    ds = DrawDataset(fake_clip, num_videos=4, seed=0)
    stream = batch_stream(ds, clips_per_batch=3)
    full = take(stream, 0, 6)
    assert take(stream, 4, 2) == full[4:]


def test_workers_do_not_change_the_stream():
    ds = DrawDataset(fake_clip, num_videos=4, seed=1)
    serial = take(batch_stream(ds, clips_per_batch=2), 0, 5)
    parallel = take(batch_stream(ds, clips_per_batch=2, num_workers=2), 0, 5)
    assert serial == parallel


def test_seed_changes_the_stream():
    a = take(batch_stream(DrawDataset(fake_clip, num_videos=4, seed=0), clips_per_batch=2), 0, 4)
    b = take(batch_stream(DrawDataset(fake_clip, num_videos=4, seed=1), clips_per_batch=2), 0, 4)
    assert a != b
    assert all(0 <= c["video"] < 4 for batch in a for c in batch)
    assert np.isfinite([c["noise"] for batch in a for c in batch]).all()
