"""Do the runner's thread settings reach TensorFlow in a worker? And what do they cost or gain?

``scheduler.Runner`` gives each of ``-j N`` workers ``TF_NUM_INTRAOP_THREADS`` and ``OMP_NUM_THREADS`` =
cores / N. This starts fresh interpreters the way a worker starts (environment set before TensorFlow is
imported through ``trashnet.core.keras_env``), trains a MobileNetV3-Small at 96 px on random data for a few
steps, and records per setting: the OS threads the process ends with, CPU seconds per wall second (how
many cores it really used), and images/s. With ``--pair`` it also runs two 1-thread processes side by side.
Writes benchmarks/results/bench_threads.json.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_threads.py [--pair]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from trashnet.core import fileio, provenance

PROBE = """
import json, os, resource, sys, time
from trashnet.core.keras_env import keras, tf
from trashnet.nets import models
import numpy as np
steps, batch = int(sys.argv[1]), 32
model = models.build_model("mobilenet_v3_small", num_classes=6, image_size=96, bn_momentum=0.99)
model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
x = np.random.default_rng(0).uniform(0, 255, (batch * steps, 96, 96, 3)).astype("float32")
y = np.random.default_rng(1).integers(0, 6, batch * steps)
model.fit(x[:batch * 2], y[:batch * 2], batch_size=batch, epochs=1, verbose=0)  # trace
cpu0, wall0 = time.process_time(), time.perf_counter()
model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
wall = time.perf_counter() - wall0
print(json.dumps({"threads": len(os.listdir("/proc/self/task")), "cpu_per_wall": round((time.process_time() - cpu0) / wall, 2),
                  "images_per_s": round(batch * steps / wall, 1), "wall_s": round(wall, 1),
                  "intra_op_setting": tf.config.threading.get_intra_op_parallelism_threads()}))
"""


def probe(env_extra: dict[str, str], steps: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), **env_extra)
    for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        if name not in env_extra:
            env.pop(name, None)
    return subprocess.Popen([sys.executable, "-c", PROBE, str(steps)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=REPO)


def result(process: subprocess.Popen) -> dict:
    out, _ = process.communicate()
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--pair", action="store_true", help="also two 1-thread processes at once")
    args = parser.parse_args()
    one = {"TF_NUM_INTRAOP_THREADS": "1", "OMP_NUM_THREADS": "1"}
    record: dict = {"steps": args.steps, "batch": 32, "model": "mobilenet_v3_small 96 px, random data",
                    "load_average_before": os.getloadavg(), "hardware": provenance.hardware()}
    start = time.perf_counter()
    record["default_threads"] = result(probe({}, args.steps))
    record["one_thread"] = result(probe(one, args.steps))
    if args.pair:
        pair = [probe(one, args.steps), probe(one, args.steps)]
        record["two_one_thread_processes"] = [result(p) for p in pair]
        record["pair_images_per_s"] = round(sum(r["images_per_s"] for r in record["two_one_thread_processes"]), 1)
    record["seconds"] = round(time.perf_counter() - start, 1)
    record["load_average_after"] = os.getloadavg()
    fileio.write_json(REPO / "benchmarks" / "results" / "bench_threads.json", record)
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
