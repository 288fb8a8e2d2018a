"""The serving side of paper 003's catalyzer: numpy forward, bytes round trip, the two codes."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from app.engine.catalyzer import (
    LATTICE_R2,
    Catalyzer,
    LatticeCodec,
    binary_index,
    lattice_index,
    sign_codes,
)


def _catalyzer(d_in: int = 16, hidden: int = 32, d_out: int = 64) -> Catalyzer:
    rng = np.random.default_rng(3)
    dims = (d_in, hidden, hidden, d_out)
    layers = tuple(
        (
            rng.standard_normal((a, b)).astype(np.float32) / np.sqrt(a),
            rng.standard_normal(b).astype(np.float32),
        )
        for a, b in itertools.pairwise(dims)
    )
    return Catalyzer(layers, {"note": "hand-made"})


def test_apply_is_the_relu_mlp_with_a_normalised_output() -> None:
    cat = _catalyzer()
    x = np.random.default_rng(4).standard_normal((50, 16)).astype(np.float32)
    (w0, b0), (w1, b1), (w2, b2) = cat.layers
    h = np.maximum(x @ w0 + b0, 0)
    h = np.maximum(h @ w1 + b1, 0)
    ref = h @ w2 + b2
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    y = cat.apply(x)
    assert y.dtype == np.float32 and y.shape == (50, 64)
    np.testing.assert_allclose(y, ref, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="dimension 16"):
        cat.apply(np.ones((2, 15), dtype=np.float32))


def test_bytes_round_trip_keeps_weights_and_params() -> None:
    cat = _catalyzer()
    again = Catalyzer.from_bytes(cat.to_bytes())
    assert again.params == {"note": "hand-made"}
    assert (again.d_in, again.d_out) == (16, 64)
    x = np.random.default_rng(5).standard_normal((20, 16)).astype(np.float32)
    for (w, b), (w2, b2) in zip(cat.layers, again.layers, strict=True):
        np.testing.assert_array_equal(w, w2)
        np.testing.assert_array_equal(b, b2)
    # equal weights; BLAS may sum in another order for another memory alignment
    np.testing.assert_allclose(again.apply(x), cat.apply(x), atol=1e-6)


def test_layers_that_do_not_chain_are_refused() -> None:
    w = np.ones((4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="chain"):
        Catalyzer(((w, np.zeros(3, np.float32)), (w, np.zeros(3, np.float32))))
    with pytest.raises(ValueError, match="bias"):
        Catalyzer(((w, np.zeros(4, np.float32)),))


@pytest.mark.parametrize("bits", [64, 128, 256])
def test_sign_codes_are_packed_as_faiss_hamming_expects(bits: int) -> None:
    rng = np.random.default_rng(bits)
    db = rng.standard_normal((300, bits)).astype(np.float32)
    q = rng.standard_normal((7, bits)).astype(np.float32)
    codes = sign_codes(db)
    assert codes.shape == (300, bits // 8) and codes.dtype == np.uint8
    distances, ids = binary_index(codes).search(sign_codes(q), 300)
    numpy_hamming = ((q[:, None, :] > 0) != (db[None, :, :] > 0)).sum(-1)
    np.testing.assert_array_equal(distances, np.take_along_axis(numpy_hamming, ids, axis=1))
    with pytest.raises(ValueError, match="multiple of 8"):
        sign_codes(np.ones((2, 12), dtype=np.float32))


def test_lattice_code_is_a_nearby_integer_point_of_norm2_79() -> None:
    codec = LatticeCodec()
    y = np.random.default_rng(6).standard_normal((200, 24)).astype(np.float32)
    codes = codec.encode(y)
    assert codes.dtype == np.uint64 and codes.shape == (200,)
    points = codec.decode(codes)
    np.testing.assert_array_equal(points, np.round(points))
    np.testing.assert_array_equal((points**2).sum(axis=1), np.full(200, LATTICE_R2))
    # lattice points encode to themselves
    np.testing.assert_array_equal(codec.encode(points), codes)
    # The code is the *nearest* lattice point: no point of the lattice that we can name (the
    # other vectors' codes) is at a smaller angle from the input.
    unit = y / np.linalg.norm(y, axis=1, keepdims=True)
    cos_own = (unit * points).sum(1)
    cos_any = unit @ points.T
    assert (cos_own >= cos_any.max(axis=1) - 1e-4).all()
    np.testing.assert_allclose(np.linalg.norm(codec.quantize(y), axis=1), 1.0, atol=1e-6)


def test_lattice_points_scan_exactly_as_int8() -> None:
    codec = LatticeCodec()
    rng = np.random.default_rng(7)
    points = codec.decode(codec.encode(rng.standard_normal((500, 24)).astype(np.float32)))
    index = lattice_index(points)
    assert index.sa_code_size() == 24
    q = rng.standard_normal((9, 24)).astype(np.float32)
    scores, ids = index.search(q, 20)
    np.testing.assert_allclose(scores, np.take_along_axis(q @ points.T, ids, axis=1), atol=1e-4)
    np.testing.assert_allclose(scores, -np.sort(-(q @ points.T), axis=1)[:, :20], atol=1e-4)
    with pytest.raises(ValueError, match="integer"):
        lattice_index(points + 0.5)


def test_serving_a_catalyzer_does_not_import_torch() -> None:
    code = (
        "import sys, numpy as np\n"
        "from app.engine import catalyzer as c\n"
        "w = np.ones((4, 24), np.float32)\n"
        "cat = c.Catalyzer(((w, np.zeros(24, np.float32)),))\n"
        "y = cat.apply(np.ones((3, 4), np.float32))\n"
        "c.sign_codes(y); lc = c.LatticeCodec(); c.lattice_index(lc.decode(lc.encode(y)))\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
