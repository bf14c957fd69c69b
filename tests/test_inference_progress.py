"""Progress that means something: it follows the tiles run, and long runs log the time left."""

import pytest

from sarlulc.inference.progress import TimeLeftLog
from sarlulc.inference.engine import RunOptions, segment
from sarlulc.inference.session import ModelSession

from factories import write_pixel_lulc_model, write_sar_raster


@pytest.fixture(scope="module")
def lulc_model(tmp_path_factory):
    return write_pixel_lulc_model(tmp_path_factory.mktemp("models") / "lulc.onnx", tile_size=64, tile_overlap=16)


def test_progress_follows_the_tiles_run_on_unequal_blocks(lulc_model, tmp_path, monkeypatch):
    """The layout of a 2048 px scene with 256 px tiles, scaled down by 4: a large first block holding
    nearly all the tiles, then thin strips that hold none. Counting blocks sat at 0-25 % for most of the run."""
    scene = write_sar_raster(tmp_path / "scene.tif", 512, 512)
    tiles_done, samples = [0], []
    run = ModelSession.run

    def counting_run(session, batch):
        scores = run(session, batch)
        tiles_done[0] += len(batch)
        return scores

    monkeypatch.setattr(ModelSession, "run", counting_run)
    report = segment(scene, tmp_path / "lulc.tif", lulc_model, options=RunOptions(block_size=480, batch_size=4),
                     progress=lambda percent: samples.append((percent, tiles_done[0])))

    assert report.tiles == report.tiles_planned == 121 == tiles_done[0]  # each tile once
    percents = [percent for percent, _ in samples]
    assert percents == sorted(percents) and percents[-1] == 100.0
    # A batch of 4 tiles is 2.7 %; the last 5 % are closing (compressing) the outputs.
    assert max(b - a for a, b in zip(percents, percents[1:])) <= 5.0
    for percent, tiles in samples[:-1]:
        # 2 % finding where the data is; reading and writing blocks take the rest
        assert abs(percent - 95.0 * (0.02 + 0.98 * tiles / report.tiles)) < 6.0


def test_a_long_run_logs_the_time_left_from_its_pace():
    clock, reported, logged = [0.0], [], []
    progress = TimeLeftLog(reported.append, logged.append, every_s=30.0, clock=lambda: clock[0])
    for seconds, percent in ((0, 0.0), (10, 8.0), (31, 20.0), (40, 26.0), (62, 40.0), (150, 100.0)):
        clock[0] = seconds
        progress(percent)
    assert reported == [0.0, 8.0, 20.0, 26.0, 40.0, 100.0]
    assert logged == ["Progress: 20 %, about 2 min 04 s left", "Progress: 40 %, about 1 min 33 s left"]


def test_a_short_run_logs_no_time_left(lulc_model, tmp_path):
    messages = []
    segment(write_sar_raster(tmp_path / "scene.tif", 90, 70), tmp_path / "lulc.tif", lulc_model,
            log=messages.append)
    assert not any(message.startswith("Progress:") for message in messages)
