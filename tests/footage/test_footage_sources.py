"""Footage inputs (person_search.footage.sources) and frame decoding (.frames): which frames,
which cameras and times, what a broken input gives."""

from __future__ import annotations

import math
import os
import time

import cv2
import numpy as np
import pytest
from footage_testutils import gradient_frames, write_video

from person_search.footage.frames import VideoReader, iter_frames, prefetch, read_frame
from person_search.footage.sources import FootageSource, FrameTable, discover_sources


def _write_image(path, image_bgr) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), image_bgr)


@pytest.fixture
def footage(tmp_path):
    """footage/cam_a/{1,2}.png, footage/cam_a/sub/3.png, footage/cam_b/x.jpg, footage/notes.txt
    and a 7-frame video footage/door.avi (fps 5)."""
    root = tmp_path / "footage"
    frames = gradient_frames(7)
    _write_image(root / "cam_a" / "2.png", frames[0])
    _write_image(root / "cam_a" / "1.png", frames[1])
    _write_image(root / "cam_a" / "sub" / "3.png", frames[2])
    _write_image(root / "cam_b" / "x.jpg", frames[3])
    (root / "notes.txt").write_text("not footage")
    write_video(root / "door.avi", frames, fps=5.0)
    return root, frames


def test_folder_gives_sorted_images_and_its_videos(footage):
    root, _ = footage
    images, video = discover_sources([str(root)], every_n_frames=3)
    assert images.kind == "images" and images.path == str(root)
    assert images.files == ("cam_a/1.png", "cam_a/2.png", "cam_a/sub/3.png", "cam_b/x.jpg")
    assert images.frame_cameras() == ["cam_a", "cam_a", "sub", "cam_b"]
    assert video.kind == "video" and video.path == str(root / "door.avi")
    assert (video.camera, video.num_frames, video.fps, video.frame_step) == ("door", 7, 5.0, 3)
    assert video.frame_numbers().tolist() == [0, 3, 6]

    table = FrameTable.from_sources([images, video])
    assert table.source.tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert table.frame.tolist() == [0, 1, 2, 3, 0, 3, 6]
    assert table.camera_names == ["cam_a", "cam_b", "door", "sub"]
    assert [table.camera_names[c] for c in table.camera] == [
        "cam_a", "cam_a", "sub", "cam_b", "door", "door", "door",
    ]  # fmt: skip
    assert np.isnan(table.time[:4]).all()
    np.testing.assert_allclose(table.time[4:], [0.0, 0.6, 1.2])


def test_camera_map_names_every_frame_of_an_input(footage):
    root, _ = footage
    video = str(root / "door.avi")
    sources = discover_sources(
        [str(root / "cam_a"), video], cameras={video: "entrance", str(root / "cam_a"): "hall"}
    )
    assert [s.frame_cameras() for s in sources] == [["hall"] * 3, ["entrance"] * 7]
    with pytest.raises(ValueError, match=r"not inputs: \[.*elsewhere"):
        discover_sources([video], cameras={str(root / "elsewhere"): "x"})


def test_source_round_trips_through_its_dict(footage):
    root, _ = footage
    for source in discover_sources([str(root)]):
        assert FootageSource.from_dict(source.to_dict()) == source


def test_bad_inputs_are_errors_naming_them(footage, tmp_path):
    root, _ = footage
    empty = tmp_path / "empty"
    (empty / "deeper").mkdir(parents=True)
    (empty / "deeper" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=f"{empty} holds no image .* or video"):
        discover_sources([str(empty)])
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video" * 50)
    with pytest.raises(ValueError, match=f"cannot open video {broken}"):
        discover_sources([str(broken)])
    with pytest.raises(FileNotFoundError, match="input not found: .*nowhere"):
        discover_sources([str(tmp_path / "nowhere")])
    with pytest.raises(ValueError, match="notes.txt is neither a folder, an image"):
        discover_sources([str(root / "notes.txt")])
    with pytest.raises(ValueError, match="door.avi is reached through two inputs"):
        discover_sources([str(root), str(root / "door.avi")])
    with pytest.raises(ValueError, match="every_n_frames must be >= 1"):
        discover_sources([str(root)], every_n_frames=0)
    with pytest.raises(ValueError, match="no input given"):
        discover_sources([])


def test_frames_decode_images_and_video_in_the_model_format(footage):
    root, frames = footage
    images, video = discover_sources([str(root)], every_n_frames=2)
    first, reason = read_frame(images, 0, "BGR")  # cam_a/1.png = frames[1], lossless
    assert reason is None and np.array_equal(first, frames[1])
    rgb, _ = read_frame(images, 0, "RGB")
    assert np.array_equal(rgb, frames[1][:, :, ::-1])
    decoded = list(iter_frames([images, video], np.array([1, 1, 1]), np.array([0, 2, 6]), "BGR"))
    for (image, reason), f in zip(decoded, [0, 2, 6]):
        assert reason is None
        assert np.abs(image.astype(int) - frames[f]).mean() < 3  # MJPG is lossy, but close


def test_video_frames_are_the_same_read_sequentially_or_after_a_seek(footage):
    root, _ = footage
    path = str(root / "door.avi")
    capture = cv2.VideoCapture(path)
    sequential = [capture.read()[1] for _ in range(7)]
    capture.release()
    reader = VideoReader(path, "BGR")
    got = [reader.read(f)[0] for f in (2, 3, 6)]  # seek to 2, then move forward
    reader.close()
    for image, f in zip(got, (2, 3, 6)):
        assert np.array_equal(image, sequential[f])
    reader = VideoReader(path, "BGR")
    reader.read(4)
    with pytest.raises(ValueError, match="increasing order"):
        reader.read(1)
    reader.close()


def test_undecodable_frames_come_with_their_reason(footage, tmp_path):
    root, frames = footage
    data = (root / "door.avi").read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    (source,) = discover_sources([str(truncated)])
    assert source.num_frames == 7  # the container's count: the frames are not all there
    results = list(iter_frames([source], np.zeros(7, int), np.arange(7), "BGR"))
    failed = [f for f, (image, _) in enumerate(results) if image is None]
    assert failed and failed == list(range(failed[0], 7))
    assert all(results[f][1] == f"cannot decode frame {f}" for f in failed)

    bad = tmp_path / "cam" / "bad.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    (images,) = discover_sources([str(bad.parent)])
    image, reason = read_frame(images, 0, "BGR")
    assert image is None and reason.startswith("cannot read image")
    os.remove(bad)
    assert read_frame(images, 0, "BGR") == (None, "file not found")


def test_video_of_unknown_frame_rate_has_no_times():
    source = FootageSource("video", "/v.avi", "v", fps=0.0, num_frames=3)
    table = FrameTable.from_sources([source])
    assert all(math.isnan(t) for t in table.time)


def test_prefetch_keeps_order_raises_at_the_failing_item_and_stops_when_closed():
    assert list(prefetch(iter(range(50)), 3)) == list(range(50))

    def failing():
        yield 1
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in prefetch(failing(), 2):
            got.append(item)
    assert got == [1]

    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    ahead = prefetch(endless(), 2)
    assert [next(ahead) for _ in range(3)] == [0, 1, 2]
    ahead.close()  # joins the thread: nothing is produced any more
    count = len(produced)
    assert count <= 3 + 2 + 2
    time.sleep(0.3)
    assert len(produced) == count
    with pytest.raises(ValueError, match="prefetch size must be >= 1"):
        next(prefetch(iter([1]), 0))
