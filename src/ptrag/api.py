"""``ptrag.Model``: one arm, configured, fitted into a run directory, used to predict, saved and loaded.

In the style of scvi-tools' model classes; the command line uses the same class.

>>> import ptrag
>>> model = ptrag.Model.from_config("cpu-small", arm="ptrag", overrides=["train.max_steps=2000"])
>>> model.fit("data.h5ad", "split.toml", run_dir="runs/ptrag")
>>> adata_pred, adata_real = model.predict("data.h5ad", split="test")
>>> model.save("runs/ptrag-copy"); model = ptrag.Model.load("runs/ptrag", checkpoint="last")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anndata as ad
import pandas as pd

from ptrag.config import DEFAULT_PRESET, Config, load_config
from ptrag.data.dataset import PerturbationDataset
from ptrag.data.splits import Split
from ptrag.errors import CheckpointError
from ptrag.progress import progress_enabled

__all__ = ["Model"]

if TYPE_CHECKING:
    from ptrag.prediction.predict import Prediction
    from ptrag.prediction.screen import ScreenResult
    from ptrag.run.checkpoint import Checkpoint
    from ptrag.run.evidence import EvidenceUpdate
    from ptrag.training.run import TrainingOutcome

DataLike = str | Path | ad.AnnData | PerturbationDataset
SplitLike = str | Path | Split


class Model:
    """One arm with its run directory.

    ``Model(config)`` or :meth:`from_config` configures a model to :meth:`fit`; :meth:`load` opens a
    trained run (its best checkpoint unless ``checkpoint="last"``). Without a config, a new run uses
    the default preset and a resumed run (``fit(..., resume=True)``) its own config.
    """

    def __init__(self, config: Config | None = None) -> None:
        self._config = config
        self.run_dir: Path | None = None
        self._checkpoint: Checkpoint | None = None
        self.outcome: TrainingOutcome | None = None

    @classmethod
    def from_config(
        cls,
        source: str | Path | None = DEFAULT_PRESET,
        overrides: Sequence[str] = (),
        *,
        arm: str | None = None,
    ) -> Model:
        """A preset or TOML/YAML file, an arm (``ptrag.config.arms``) and ``section.key=value`` overrides."""
        return cls(load_config(source, [*([f"model.arm={arm}"] if arm else []), *overrides]))

    @property
    def config(self) -> Config:
        """The trained run's config once fitted or loaded; before that, the one to train with."""
        if self.run_dir is not None or self._checkpoint is not None:
            return self.checkpoint.config
        return self._config if self._config is not None else load_config(DEFAULT_PRESET)

    @property
    def checkpoint(self) -> Checkpoint:
        """The loaded checkpoint (config, spec, weights, step); after fit() its best one."""
        if self._checkpoint is None and self.run_dir is not None:
            self._open(self.run_dir, "best")  # after fit(): opened on first use
        if self._checkpoint is None:
            raise CheckpointError("This model has not been trained or loaded: call fit() or Model.load().")
        return self._checkpoint

    @property
    def genes(self) -> tuple[str, ...]:
        """The ordered genes the model predicts (data must have them all)."""
        return self.checkpoint.spec.genes

    @property
    def perturbations(self) -> tuple[str, ...]:
        return self.checkpoint.spec.vocabulary

    @property
    def cell_types(self) -> tuple[str, ...]:
        return self.checkpoint.spec.cell_types

    @staticmethod
    def _training_data(data: DataLike, config: Config) -> PerturbationDataset:
        from ptrag.data.loading import load_dataset

        if isinstance(data, PerturbationDataset):
            return data
        return load_dataset(data, config.data, set_len=config.train.cell_set_len)

    def load_data(
        self, data: DataLike, overrides: Sequence[str] = (), *, progress: bool = True
    ) -> PerturbationDataset:
        """A screen to predict on, read as the run's training data was: its columns (``overrides``
        such as ``data.cell_type_column="tissue"`` for a file that names them differently), its
        ordered genes and its normalisation. ``progress=False``: no file-reading progress."""
        from ptrag.config import apply_overrides
        from ptrag.data.loading import load_dataset

        if isinstance(data, PerturbationDataset):
            return data
        spec = self.checkpoint.spec
        config = apply_overrides(self.checkpoint.config, overrides).data
        with progress_enabled(progress):
            return load_dataset(
                data, config, genes=spec.genes, normalisation=spec.normalisation, prediction_input=True
            )

    def run_split(self) -> Split:
        """The split the run trained with (its split.toml, with any held-out val groups)."""
        from ptrag.run.layout import read_run_split

        if self.run_dir is None:
            raise CheckpointError("This checkpoint is not in a run directory; give the split file.")
        return read_run_split(self.run_dir)

    def fit(
        self,
        data: DataLike,
        split: SplitLike | None,
        run_dir: str | Path = "runs/ptrag",
        *,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
        verbose: bool = False,
    ) -> Model:
        """Train into ``run_dir`` (or continue it with ``resume``); afterwards the model is that run.

        ``split`` may be None when resuming: the run's own split is used. ``progress=False``: no
        progress at all (training steps, file reading).
        """
        with progress_enabled(progress):
            return self._fit(data, split, Path(run_dir), resume, overwrite, progress, verbose)

    def _fit(
        self,
        data: DataLike,
        split: SplitLike | None,
        run_dir: Path,
        resume: bool,
        overwrite: bool,
        progress: bool,
        verbose: bool,
    ) -> Model:
        from ptrag.training.resume import run_config_for_resume
        from ptrag.training.run import train

        # A resumed run keeps its own config unless this model was given one (which must agree).
        config = self._config if resume else self.config
        dataset = self._training_data(data, config or run_config_for_resume(run_dir))
        if split is not None and not isinstance(split, Split):
            split = Split.read(split)
        self.outcome = train(
            config,
            dataset,
            split,
            run_dir,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
            verbose=verbose,
        )
        # Opened when first used: under DDP only rank 0 moves the finished run into place.
        self.run_dir, self._checkpoint = run_dir, None
        return self

    def _open(self, run_dir: Path, checkpoint: str) -> None:
        from ptrag.run.checkpoint import Checkpoint

        self._checkpoint = Checkpoint.load(run_dir, checkpoint)
        self.run_dir = self._checkpoint.run_dir

    def predict(
        self,
        data: DataLike,
        split: str = "test",
        *,
        split_file: SplitLike | None = None,
        queries: pd.DataFrame | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> Prediction:
        """Predicted (and real) cells for a split's groups, or predictions for in-silico ``queries``.

        Returns a :class:`~ptrag.prediction.predict.Prediction`: ``adata_pred, adata_real = ...``
        unpacks it; ``.retrieval`` is the retrieval record, ``.references`` (held-out groups) the
        simple references' shifts, and ``.write(out_dir)`` saves them all.
        ``queries``: a DataFrame with columns cell_type, perturbation and optional n_cells, checked
        like a ``--queries`` file. ``progress=False``: no progress at all (file reading included).
        """
        with progress_enabled(progress):
            return self._predict(data, split, split_file, queries, seed)

    def _predict(
        self,
        data: DataLike,
        split: str,
        split_file: SplitLike | None,
        queries: pd.DataFrame | None,
        seed: int,
    ) -> Prediction:
        from ptrag.evaluation import reference_shifts_for_split
        from ptrag.prediction.insilico import check_queries, check_query_size, predict_queries
        from ptrag.prediction.predict import predict_sets

        checkpoint = self.checkpoint
        if queries is not None:  # before the data is read
            queries = check_queries(queries)
            check_query_size(queries, len(checkpoint.spec.genes))
        dataset = self.load_data(data)
        if queries is not None:
            return predict_queries(checkpoint, dataset, queries, seed=seed)
        split_obj = self.run_split() if split_file is None else split_file
        split_obj = split_obj if isinstance(split_obj, Split) else Split.read(split_obj)
        split_obj.validate(dataset)
        groups = split_obj.groups(dataset, split)
        prediction = predict_sets(checkpoint, dataset, groups, seed=seed, role=split)
        # The simple references' shifts from the split's training cells, for `ptrag evaluate`.
        config = checkpoint.config
        prediction.references = reference_shifts_for_split(
            dataset, split_obj, prediction.adata_real, config.embedding, config.retrieval
        )
        return prediction

    def screen(
        self,
        data: DataLike,
        cell_type: str,
        genes: Sequence[str] | str | None = None,
        *,
        n_cells: int | None = None,
        keep_cells: bool = False,
        low_evidence_cosine: float | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> ScreenResult:
        """In-silico screen of ``genes`` (default: every gene with an embedding) in ``cell_type``,
        from its control cells in ``data``; see :func:`ptrag.prediction.screen.screen_genes`.
        ``genes`` may be one symbol (``"MYC"``). ``progress=False``: no progress at all."""
        from ptrag.prediction.screen import screen_genes

        with progress_enabled(progress):
            return screen_genes(
                self.checkpoint,
                self.load_data(data),
                cell_type,
                genes,
                n_cells=n_cells,
                keep_cells=keep_cells,
                low_evidence_cosine=low_evidence_cosine,
                seed=seed,
            )

    def add_evidence(
        self, data: DataLike, out: str | Path, *, replace: bool = False, overwrite: bool = False
    ) -> tuple[Model, EvidenceUpdate]:
        """``ptrag memory add``: a copy of this run at ``out`` whose evidence memory also holds the
        perturbations measured in ``data`` (read with the run's genes and normalisation); this run
        is never modified. Returns the grown run and what changed (``.message`` says it in words,
        including what the grown run does and does not do with the added rows)."""
        from ptrag.run.evidence import add_evidence

        if self.run_dir is None:
            raise CheckpointError("Nothing to grow: the model has not been trained or loaded.")
        dataset = self.load_data(data)
        update = add_evidence(self.run_dir, dataset, out, replace_rows=replace, overwrite=overwrite)
        return Model.load(out), update

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Copy the run directory (checkpoints, config, split, metrics) to ``path``."""
        from ptrag.run.checkpoint import copy_run

        if self.run_dir is None:
            raise CheckpointError("Nothing to save: the model has not been trained or loaded.")
        return copy_run(self.run_dir, path, overwrite=overwrite)

    @classmethod
    def load(cls, run_dir: str | Path, checkpoint: str = "best") -> Model:
        """A trained run: ``checkpoint`` is "best" (lowest validation loss), "last" or a file."""
        model = cls()
        model._open(Path(run_dir), checkpoint)
        return model
