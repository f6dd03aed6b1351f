"""Thread choice, the annotation cache's failure messages, and the text-keyed embedding cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ptrag.embeddings.encoder as encoder
from ptrag.embeddings.annotation import locate_annotation
from ptrag.embeddings.cache import encode_with_cache
from ptrag.errors import EmbeddingError


@pytest.mark.parametrize(
    ("cores", "load", "expected"), [(2, 0.2, 2), (2, 1.5, 1), (2, 5.0, 1), (16, 3.0, 2), (1, 0, 1)]
)
def test_default_threads_backs_off_when_busy(
    monkeypatch: pytest.MonkeyPatch, cores: int, load: float, expected: int
) -> None:
    monkeypatch.setattr(encoder.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(encoder.os, "getloadavg", lambda: (load, load, load))
    assert encoder.default_threads() == expected


def test_missing_apt_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTRAG_ANNOTATION_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get, no dpkg-deb
    with pytest.raises(EmbeddingError, match=r"apt-get.*not available.*--annotation-dir"):
        locate_annotation()
    with pytest.raises(EmbeddingError, match="No annotation cache"):
        locate_annotation(download=False)
    assert not (tmp_path / "cache" / "extracted").exists()


def test_embedding_cache_encodes_each_text_once(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def fake_encode(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return np.array([[len(t), 1.0] + [0.0] * 382 for t in texts], dtype=np.float32)

    first, cached = encode_with_cache(["aa", "b", "aa"], fake_encode, tmp_path)
    assert cached == 0 and calls == [["aa", "b"]]
    second, cached = encode_with_cache(["b", "ccc"], fake_encode, tmp_path)
    assert cached == 1 and calls[-1] == ["ccc"]
    np.testing.assert_array_equal(second[0], first[1])
    assert second[1, 0] == 3.0
    (tmp_path / "all-MiniLM-L6-v2.npz").write_bytes(b"corrupt")
    third, cached = encode_with_cache(["b"], fake_encode, tmp_path)  # a damaged cache is rebuilt
    assert cached == 0 and third[0, 0] == 1.0
