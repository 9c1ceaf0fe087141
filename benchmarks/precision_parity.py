"""Does bf16 training learn what float32 training learns? The same recipe, rows and seed in both.

benchmarks/option_effects.py with two arms: ``fp32`` (``model.dtype=float32 train.mixed_precision=no``, the
reference) and ``bf16`` (``bfloat16`` / ``bf16``), for the quickstart and paper recipes; each export ranks the
validation rows of ``--val-data`` and the two are compared paired on rows ``--rows``; the loss curves are drawn
overlaid. Finished trainings and evaluations in ``--out`` are reused. Usage::

    llara data prepare movielens --val-windows 6 --out data/ml100k-valwin6
    python benchmarks/precision_parity.py --stage runs/quickstart/stages/train-llara-sasrec \\
        --val-data data/ml100k-valwin6 --out runs/precision-parity
"""

from __future__ import annotations

import json

from option_effects import arguments, run

PRECISIONS = {
    "fp32": ["model.dtype=float32", "train.mixed_precision=no"],
    "bf16": ["model.dtype=bfloat16", "train.mixed_precision=bf16"],
}


def main() -> None:
    args = arguments(__doc__).parse_args()
    summary = run(args.stage, args.val_data, args.out, args.recipes.split(","), PRECISIONS, [], args.rows)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
