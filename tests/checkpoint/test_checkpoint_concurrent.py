"""Threads saving to one checkpoint path: no error, the last complete writer wins, and
a reader never sees a partial file (issue 19, item 2)."""

from __future__ import annotations

import os
import threading

import numpy as np

from mxjax import checkpoint


def test_threads_saving_to_one_path(tmp_path):
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, {"w": np.zeros(1000, np.float32)})
    errors: list[BaseException] = []
    done = threading.Event()
    seen: set[float] = set()

    def writer(k: int) -> None:
        try:
            for i in range(15):
                checkpoint.save(path, {"w": np.full(1000, 100 * k + i, np.float32)})
        except BaseException as e:  # noqa: BLE001 - collected and asserted
            errors.append(e)

    def reader() -> None:
        try:
            while not done.is_set():
                w = checkpoint.load(path, like_state={"w": np.zeros(1000, np.float32)})
                w = np.asarray(w.state["w"])
                assert (w == w[0]).all()  # one writer's whole array
                seen.add(float(w[0]))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    writers = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    for t in readers:
        t.join()
    assert not errors, errors[:3]
    final = float(checkpoint.load(path, like_state={"w": np.zeros(1000, np.float32)}).state["w"][0])
    assert final in {100 * k + 14 for k in range(6)}  # some writer's last save
    assert os.listdir(tmp_path) == ["ckpt.npz"]  # no temporary left
