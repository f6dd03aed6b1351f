"""Names with one home: the obs columns, ``uns`` key and checkpoint keys of ptrag's files.

Predicted and real cells follow cell-eval's layout (``target_gene``, ``cell_type``); every module
that writes or reads these files names them through here, in the spirit of scvi-tools'
``_constants``. The data's own columns (``gene``, ``cell_line``, ...) are detected on reading
(``ptrag.data.columns``) and renamed to the dataset's internal names (``ptrag.data.dataset``).
"""

from __future__ import annotations

__all__ = [
    "AVERAGE_KEY",
    "BATCH_COL",
    "BUNDLED_SOURCE",
    "CELL_SCALE_KEY",
    "CELL_TYPE_COL",
    "CHECKPOINT_KEY",
    "CONTROL_BARCODE_COL",
    "MODEL_PREFIX",
    "PERT_COL",
    "RESIDUAL_SCALE_KEY",
    "UNS_KEY",
]

# obs columns of adata_pred.h5ad / adata_real.h5ad (cell-eval's names) and of references built on them.
PERT_COL = "target_gene"
CELL_TYPE_COL = "cell_type"
BATCH_COL = "batch"
# The control cell each predicted cell was predicted from (obs of adata_pred only).
CONTROL_BARCODE_COL = "control_barcode"

# adata.uns[UNS_KEY]: control label, split, arm, checkpoint and what each workflow adds.
UNS_KEY = "ptrag"

# The checkpoint payload: CHECKPOINT_KEY holds the run (config, spec, gene list and vocabulary);
# model weights are the state dict's MODEL_PREFIX entries; the scales calibration chose sit beside.
CHECKPOINT_KEY = "ptrag"
MODEL_PREFIX = "model."
RESIDUAL_SCALE_KEY = "residual_scale"
CELL_SCALE_KEY = "cell_scale"
# A training checkpoint of a run with train.ema_decay > 0: the weights' moving average (its
# parameters keyed as the PerturbationModel names them), which prediction from last.ckpt uses.
AVERAGE_KEY = "ptrag_weight_average"

# embedding.source naming the gene table shipped with ptrag (rather than a file).
BUNDLED_SOURCE = "bundled"
