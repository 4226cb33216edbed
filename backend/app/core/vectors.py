"""Embedding vectors as stored and compared: float32, little-endian, of unit length.

Pure computation, no database. Vectors are normalised once, when stored, so that a dot
product is their cosine similarity; an exact search is one matrix-vector product.
"""

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FLOAT32 = np.dtype("<f4")

Matrix = npt.NDArray[np.float32]


def normalise(values: Sequence[float] | npt.NDArray[np.floating]) -> Matrix:
    """`values` as float32 of unit length. A vector that is empty, all zeros or holds a
    NaN or an infinity has no direction: ValueError."""
    vector = np.asarray(values, dtype=np.float64)
    if vector.ndim != 1 or vector.size == 0:
        raise ValueError("a vector is a non-empty sequence of numbers")
    if not np.all(np.isfinite(vector)):
        raise ValueError("a vector holds only finite numbers")
    # Scaled first so that the norm of huge or tiny components neither overflows nor
    # underflows.
    scale = np.max(np.abs(vector))
    if scale == 0:
        raise ValueError("a zero vector has no direction")
    vector = vector / scale
    unit: Matrix = (vector / np.linalg.norm(vector)).astype(FLOAT32)
    return unit


def pack(values: Sequence[float] | npt.NDArray[np.floating]) -> bytes:
    """The stored form of a vector: normalised, float32 little-endian."""
    return normalise(values).tobytes()


def unpack(data: bytes, dimensions: int) -> Matrix:
    """A stored vector back as float32; its length must be `dimensions`."""
    if len(data) != dimensions * FLOAT32.itemsize:
        raise ValueError(f"{len(data)} bytes are not a vector of {dimensions} float32")
    return np.frombuffer(data, dtype=FLOAT32)


def unpack_rows(blobs: Sequence[bytes], dimensions: int) -> Matrix:
    """Stored vectors as the rows of one (len(blobs), dimensions) float32 matrix."""
    joined = b"".join(blobs)
    if len(joined) != len(blobs) * dimensions * FLOAT32.itemsize:
        raise ValueError(f"not {len(blobs)} vectors of {dimensions} float32")
    return np.frombuffer(joined, dtype=FLOAT32).reshape(len(blobs), dimensions)


def similarities(matrix: Matrix, unit_query: Matrix) -> Matrix:
    """Cosine similarity of each row of `matrix` with `unit_query`, both of unit length.

    einsum rather than `@`: a matrix-vector product goes to BLAS, whose threads, one per
    core in every request at once, make a loaded server slower, not faster."""
    scores: Matrix = np.einsum("ij,j->i", matrix, unit_query)
    return scores


def best(scores: npt.NDArray[np.floating], keys: npt.NDArray[np.integer], k: int) -> list[int]:
    """Positions of the `k` highest `scores`, best first, equal scores by ascending key.

    argpartition finds the k-th best score in linear time; every score at least that good
    is then sorted, so a tie at the boundary is decided by key, never by chance."""
    if k <= 0 or scores.size == 0:
        return []
    if k < scores.size:
        threshold = scores[np.argpartition(-scores, k - 1)[k - 1]]
        candidates = np.flatnonzero(scores >= threshold)
    else:
        candidates = np.arange(scores.size)
    order = np.lexsort((keys[candidates], -scores[candidates]))
    return [int(position) for position in candidates[order][:k]]


def top_k(query: npt.NDArray[np.floating], matrix: Matrix, k: int) -> list[tuple[int, float]]:
    """(row, cosine similarity) of the `k` rows of `matrix` nearest to `query`, best
    first, equal scores by row. The rows are of unit length, as `pack` stores them."""
    if matrix.ndim != 2 or matrix.shape[1] != query.shape[-1]:
        raise ValueError(f"a query of {query.shape[-1]} dimensions against {matrix.shape}")
    if matrix.shape[0] == 0:
        return []
    scores = similarities(matrix, normalise(query))
    rows = best(scores, np.arange(matrix.shape[0]), k)
    return [(row, float(scores[row])) for row in rows]


def to_pgvector(values: Sequence[float] | npt.NDArray[np.floating]) -> str:
    """pgvector's text form, '[0.1,0.2,...]', for a CAST to vector. Every number is
    checked finite: the text never holds anything but numbers."""
    vector = np.asarray(values, dtype=np.float64)
    if vector.ndim != 1 or vector.size == 0 or not np.all(np.isfinite(vector)):
        raise ValueError("a vector is a non-empty sequence of finite numbers")
    return "[" + ",".join(map(repr, vector.tolist())) + "]"
