"""The Python API for notebooks, mirroring the CLI.

>>> import ptrag
>>> model = ptrag.Model.from_config("cpu-small", overrides=["model.arm=ptrag"])
>>> model.fit("data.h5ad", "split.toml", run_dir="runs/ptrag")
>>> adata_pred, adata_real = model.predict("data.h5ad", split="test")
>>> model.save("runs/ptrag-copy"); model = ptrag.Model.load("runs/ptrag")
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import anndata as ad
import pandas as pd

from ptrag.config import Config, load_config
from ptrag.data.dataset import PerturbationDataset
from ptrag.data.splits import Split
from ptrag.errors import CheckpointError, OutputError
from ptrag.io import h5ad_strings

DataLike = str | Path | ad.AnnData | PerturbationDataset
SplitLike = str | Path | Split


class Model:
    """One trained (or to-be-trained) arm with its run directory."""

    def __init__(self, config: Config, run_dir: Path | None = None) -> None:
        self.config = config
        self.run_dir = run_dir

    @classmethod
    def from_config(cls, source: str | Path | None = "cpu-small", overrides: Sequence[str] = ()) -> Model:
        return cls(load_config(source, overrides))

    def _dataset(self, data: DataLike) -> PerturbationDataset:
        from ptrag.data.loading import load_dataset

        if isinstance(data, PerturbationDataset):
            return data
        if isinstance(data, ad.AnnData):
            # One loader validates every input; an in-memory AnnData goes through a temporary file.
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "data.h5ad"
                with h5ad_strings():
                    data.write_h5ad(path)
                return load_dataset(path, self.config.data, set_len=self.config.train.cell_set_len)
        return load_dataset(data, self.config.data, set_len=self.config.train.cell_set_len)

    def fit(
        self,
        data: DataLike,
        split: SplitLike,
        run_dir: str | Path = "runs/ptrag",
        *,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
    ) -> Model:
        from ptrag.training.run import train

        split = split if isinstance(split, Split) else Split.read(split)
        result = train(
            self.config,
            self._dataset(data),
            split,
            run_dir,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
        )
        self.run_dir = result.run_dir
        return self

    def _trained(self):
        from ptrag.prediction.predict import TrainedModel

        if self.run_dir is None:
            raise CheckpointError("This model has not been trained or loaded: call fit() or Model.load().")
        return TrainedModel.load(self.run_dir)

    def predict(
        self,
        data: DataLike,
        split: str = "test",
        *,
        split_file: SplitLike | None = None,
        seed: int = 0,
        queries: pd.DataFrame | None = None,
    ) -> tuple[ad.AnnData, ad.AnnData | None]:
        """Predicted and real cells for a split's groups, or predictions for in-silico ``queries``."""
        from ptrag.prediction.insilico import predict_queries
        from ptrag.prediction.predict import predict_sets

        trained = self._trained()
        dataset = self._dataset(data)
        if queries is not None:
            prediction = predict_queries(trained, dataset, queries, seed=seed)
        else:
            assert self.run_dir is not None
            source = split_file if split_file is not None else self.run_dir / "split.toml"
            split_obj = source if isinstance(source, Split) else Split.read(source)
            split_obj.validate(dataset)
            prediction = predict_sets(
                trained, dataset, split_obj.groups(dataset, split), seed=seed, role=split
            )
        return prediction.adata_pred, prediction.adata_real

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Copy the run directory (checkpoint, config, genes, vocabulary, databases) to ``path``."""
        if self.run_dir is None:
            raise CheckpointError("Nothing to save: the model has not been trained.")
        target = Path(path)
        if target.exists():
            if not overwrite:
                raise OutputError(f"{target} exists; pass overwrite=True to replace it.")
            shutil.rmtree(target)
        shutil.copytree(self.run_dir, target)
        return target

    @classmethod
    def load(cls, run_dir: str | Path) -> Model:
        from ptrag.prediction.predict import TrainedModel

        trained = TrainedModel.load(run_dir)
        return cls(trained.config, Path(run_dir))
