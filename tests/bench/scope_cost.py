"""Pure-Python cost per text of the clinc150-intent scope score next to the head it follows.

Both run on the same embeddings in one process, interleaved, so the ratio holds on a loaded
machine even when the absolute times do not. Prints numbers only.

    .venv/bin/python tests/bench/scope_cost.py [--texts N] [--build-dir build]
"""

import argparse
import json
import random
import time
from pathlib import Path

from pyapp.tasks import create_task
from pyapp.vectors import normalize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--build-dir", default="build")
    args = parser.parse_args()
    tasks = Path(args.build_dir) / "tasks"
    name = json.loads((tasks / "index.json").read_text())["clinc150-intent"]
    artifact = json.loads((tasks / name).read_text())
    task = create_task("clinc150-intent")
    task.load_artifact(artifact)
    head, scope = task._head, task._scope
    rng = random.Random(0)
    dim = len(artifact["weights"][0])
    embeddings = [normalize([rng.gauss(0, 1) for _ in range(dim)]) for _ in range(args.texts)]
    head_s = scope_s = 0.0
    for x in embeddings:
        t0 = time.perf_counter()
        logits = head.logits(x)
        t1 = time.perf_counter()
        scope.score(x, logits, head.temperature)
        t2 = time.perf_counter()
        head_s, scope_s = head_s + t1 - t0, scope_s + t2 - t1
    n = len(embeddings)
    print(f"head  {1000 * head_s / n:.2f} ms/text\nscope {1000 * scope_s / n:.2f} ms/text\n"
          f"scope / head = {scope_s / head_s:.2f}")


if __name__ == "__main__":
    main()
