"""Anonymizer speed on this machine: seconds per training epoch of each phase and anonymization
throughput (images/s), on the pen-digits training split (5494 images of 20x20).

    .venv/bin/python benchmarks/bench_anonymizer.py --out reports/bench
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from imgprivacy.anonymizer import Anonymizer, AnonymizerConfig
from imgprivacy.data.pendigits import load_pendigits
from imgprivacy.fileio import write_atomic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("reports/bench"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_pendigits().part("train")
    config = AnonymizerConfig(pretrain_epochs=1, disc_pretrain_epochs=1, adversarial_epochs=1)
    model = Anonymizer(config).fit(data.images, data.writer)
    seconds = {row["phase"]: row["seconds"] for row in model.history_.epochs}
    batch = np.concatenate([data.images] * 4)  # 21,976 images
    model.transform(batch[:256])  # warm-up
    started = time.perf_counter()
    model.transform(batch)
    throughput = len(batch) / (time.perf_counter() - started)
    started = time.perf_counter()
    model.transform(batch, substitution=False)
    throughput_ae = len(batch) / (time.perf_counter() - started)
    results = {
        "train_images": len(data.images),
        "threads": args.threads,
        "seconds_per_epoch": seconds,
        "anonymize_images_per_second": throughput,
        "autoencoder_only_images_per_second": throughput_ae,
        "config": config.to_dict(),
    }
    write_atomic(args.out / "anonymizer.json", json.dumps(results, indent=2).encode())
    table = Table(title="Anonymizer speed (pen-digits, 20x20, CPU)")
    table.add_column("quantity")
    table.add_column("value")
    for phase, value in seconds.items():
        table.add_row(f"epoch of phase '{phase}' (5494 images)", f"{value:.1f} s")
    table.add_row(
        f"anonymization throughput ({config.n_prototypes} prototypes)",
        f"{throughput:,.0f} images/s",
    )
    table.add_row("autoencoder alone (no substitution)", f"{throughput_ae:,.0f} images/s")
    Console().print(table)


if __name__ == "__main__":
    main()
