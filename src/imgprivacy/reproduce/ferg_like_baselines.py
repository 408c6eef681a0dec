"""How hard are the FERG-like faces? Generation speed and classifiers on the originals.

    OMP_NUM_THREADS=1 python -m imgprivacy.reproduce.ferg_like_baselines --per-cell 300 --out reports/ferg-like

Generates the faces, then trains, for identity and for expression, a linear probe (logistic
regression on the pixels), a random forest and the small CNN of the anonymizer's assessment, on the
training part, and reports their test accuracy. Prints a table and writes ``baselines.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from imgprivacy.anonymizer.evaluate import ATTACKERS, AttackConfig, make_split
from imgprivacy.data.synthetic.ferg_like import generate_ferg_like


def linear_probe(data, *, config: AttackConfig, device: str = "cpu") -> np.ndarray:
    """Multinomial logistic regression on the raw pixels (train + validation)."""
    model = LogisticRegression(max_iter=300, C=1.0)
    model.fit(
        np.concatenate([data.train_x, data.val_x]), np.concatenate([data.train_y, data.val_y])
    )
    return model.predict(data.test_x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-cell", type=int, default=300, help="images per (identity, expr.)")
    parser.add_argument("--cnn-epochs", type=int, default=4)
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed-per-cell", type=int, default=1000, help="for the timing only")
    parser.add_argument("--out", type=Path, default=Path("reports/ferg-like"))
    args = parser.parse_args()

    started = time.perf_counter()
    timing = generate_ferg_like(per_cell=args.speed_per_cell, seed=args.seed + 1)
    seconds = time.perf_counter() - started
    speed = {"images": len(timing), "seconds": seconds, "images_per_second": len(timing) / seconds}
    print(f"generated {len(timing)} images in {seconds:.1f} s ({len(timing) / seconds:.0f}/s)")

    faces = generate_ferg_like(per_cell=args.per_cell, seed=args.seed)
    config = AttackConfig(cnn_epochs=args.cnn_epochs, trees=args.trees, seed=args.seed)
    families = {"linear": linear_probe, **{k: ATTACKERS[k] for k in ("random_forest", "cnn")}}
    results: dict[str, dict[str, float]] = {}
    for task, labels in (("identity", faces.identity), ("expression", faces.expression)):
        data = make_split(faces.images, labels, faces.split)
        for name, attacker in families.items():
            t0 = time.perf_counter()
            accuracy = float((attacker(data, config=config) == data.test_y).mean())
            results.setdefault(task, {})[name] = accuracy
            print(f"{task:<11} {name:<14} {accuracy:.3f}  ({time.perf_counter() - t0:.0f} s)")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "per_cell": args.per_cell,
        "images": len(faces),
        "train_images": int((faces.split == 0).sum()),
        "test_images": int((faces.split == 2).sum()),
        "chance": {"identity": 1 / 6, "expression": 1 / 7},
        "cnn_epochs": args.cnn_epochs,
        "trees": args.trees,
        "generation": speed,
        "accuracy": results,
    }
    (args.out / "baselines.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out / 'baselines.json'}")


if __name__ == "__main__":
    main()
