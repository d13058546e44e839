"""DVC stage ``pretrain``: train the default profile's starting detector once, on a simulated
corpus disjoint from the evaluated dataset (the embedded data's counterpart of ImageNet weights).

    python pipelines/pretrain.py --params params.yaml

Reads ``data.out`` and the ``pretrain`` section: ``corpus`` (simulation arguments of
``ultradet.data.generate_dataset``) written to ``corpus_out``, ``experiment`` and ``profile`` (the
single-frame detector that is trained), ``overrides`` (dotted keys) and ``out``. Writes
``<out>/model_final.pth`` (every model of the CPU profile starts from it through
``model.weights``: tensors matched by name and shape, see ``ultradet.modeling.initial_weights``),
``<out>/config.yaml`` and ``<out>/losses.csv``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from ultradet.config import dump_config, load_experiment, read_yaml
from ultradet.data.corpus import make_pretrain_corpus
from ultradet.engine import LossCSVWriter
from ultradet.engine.launch import build_trainer
from ultradet.errors import run_cli


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--experiments-dir", type=Path, default=Path("experiments"))
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    params = read_yaml(args.params)
    section, out = params["pretrain"], Path(params["pretrain"]["out"])
    cfg = load_experiment(
        section["experiment"], experiments_dir=args.experiments_dir, profile=section.get("profile"),
        overrides=section.get("overrides") or {},
    )
    corpus = make_pretrain_corpus(section["corpus_out"], dataset=params["data"]["out"], synthetic=section["corpus"])
    shutil.rmtree(out, ignore_errors=True)  # DVC removes its outputs first; a manual run must too
    out.mkdir(parents=True)
    dump_config(cfg, out / "config.yaml")
    print(f"pretrain {cfg.name}: {len(corpus)} corpus videos, {cfg.solver.max_iter} iterations -> {out}", flush=True)
    final = build_trainer(cfg, corpus, out, hooks=[LossCSVWriter(out / "losses.csv")]).train(resume=False)
    for ckpt in out.glob("model_0*.pth"):  # intermediate checkpoints
        ckpt.unlink()
    print(f"pretrain: detector weights -> {final}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "pretrain"))
