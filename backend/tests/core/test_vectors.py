"""app.core.vectors: the stored form of a vector and the exact top-k that search runs
on it (no database)."""

import math
import struct

import numpy as np
import pytest

from app.core import vectors
from app.models.ai_model import MAX_DIMENSIONS


class TestPack:
    def test_float32_little_endian_of_unit_length(self) -> None:
        data = vectors.pack([3.0, 4.0])
        assert data == struct.pack("<2f", 0.6, 0.8)
        assert np.linalg.norm(vectors.unpack(data, 2)) == pytest.approx(1.0)

    def test_round_trip_keeps_the_direction(self) -> None:
        values = [0.5, -2.0, 1e-3, 7.25]
        unpacked = vectors.unpack(vectors.pack(values), 4)
        expected = np.array(values) / np.linalg.norm(values)
        assert unpacked.dtype == np.dtype("<f4")
        assert np.allclose(unpacked, expected, atol=1e-7)

    @pytest.mark.parametrize(
        "values",
        [[], [0.0, 0.0, 0.0], [-0.0], [1.0, math.nan], [math.inf, 1.0], [-math.inf]],
        ids=["empty", "zero", "negative-zero", "nan", "inf", "minus-inf"],
    )
    def test_a_vector_without_a_direction_is_refused(self, values: list[float]) -> None:
        with pytest.raises(ValueError, match="vector"):
            vectors.pack(values)

    def test_huge_and_tiny_components_neither_overflow_nor_vanish(self) -> None:
        huge = vectors.unpack(vectors.pack([1e308, 1e308]), 2)
        assert np.allclose(huge, [math.sqrt(0.5)] * 2)
        tiny = vectors.unpack(vectors.pack([5e-324, 0.0, 5e-324]), 3)
        assert np.allclose(tiny, [math.sqrt(0.5), 0.0, math.sqrt(0.5)])

    def test_the_largest_model_dimensions(self) -> None:
        values = np.ones(MAX_DIMENSIONS)
        data = vectors.pack(values)
        assert len(data) == 4 * MAX_DIMENSIONS
        assert np.allclose(vectors.unpack(data, MAX_DIMENSIONS), 1 / math.sqrt(MAX_DIMENSIONS))

    def test_unpack_refuses_the_wrong_length(self) -> None:
        with pytest.raises(ValueError, match="not a vector of 3"):
            vectors.unpack(vectors.pack([1.0, 2.0]), 3)
        with pytest.raises(ValueError, match="not 2 vectors of 3"):
            vectors.unpack_rows([vectors.pack([1.0, 2.0, 3.0]), b"\x00"], 3)


class TestTopK:
    def test_nearest_first_with_cosine_scores(self) -> None:
        matrix = vectors.unpack_rows(
            [vectors.pack(v) for v in ([1, 0], [0, 1], [1, 1], [-1, 0])], 2
        )
        found = vectors.top_k(np.array([2.0, 0.1]), matrix, 3)
        assert [row for row, _ in found] == [0, 2, 1]
        query = np.array([2.0, 0.1]) / np.linalg.norm([2.0, 0.1])
        assert [score for _, score in found] == pytest.approx(
            [query[0], (query[0] + query[1]) / math.sqrt(2), query[1]], abs=1e-6
        )

    def test_ties_go_to_the_lower_row_even_at_the_cut(self) -> None:
        # Rows 1, 3 and 5 tie for second place; only two places are left.
        rows = [[0, 1], [1, 0], [0, 1], [1, 0], [-1, 0], [1, 0], [1, 1]]
        matrix = vectors.unpack_rows([vectors.pack(v) for v in rows], 2)
        assert [row for row, _ in vectors.top_k(np.array([1.0, 0.0]), matrix, 3)] == [1, 3, 5]
        assert [row for row, _ in vectors.top_k(np.array([1.0, 0.0]), matrix, 2)] == [1, 3]

    def test_k_larger_than_the_rows_zero_or_no_rows(self) -> None:
        matrix = vectors.unpack_rows([vectors.pack([1, 0]), vectors.pack([0, 1])], 2)
        assert [row for row, _ in vectors.top_k(np.array([0.0, 1.0]), matrix, 10)] == [1, 0]
        assert vectors.top_k(np.array([0.0, 1.0]), matrix, 0) == []
        assert vectors.top_k(np.array([0.0, 1.0]), matrix[:0], 3) == []

    def test_a_query_of_other_dimensions_or_no_direction_is_refused(self) -> None:
        matrix = vectors.unpack_rows([vectors.pack([1, 0, 0])], 3)
        with pytest.raises(ValueError, match="dimensions"):
            vectors.top_k(np.array([1.0, 0.0]), matrix, 1)
        with pytest.raises(ValueError, match="zero vector"):
            vectors.top_k(np.zeros(3), matrix, 1)

    def test_agrees_with_a_full_sort_on_random_vectors(self) -> None:
        rng = np.random.default_rng(7)
        matrix = vectors.unpack_rows([vectors.pack(v) for v in rng.standard_normal((500, 32))], 32)
        query = rng.standard_normal(32)
        scores = matrix @ (query / np.linalg.norm(query)).astype(np.float32)
        expected = sorted(range(500), key=lambda row: (-scores[row], row))[:25]
        assert [row for row, _ in vectors.top_k(query, matrix, 25)] == expected


class TestToPgvector:
    def test_the_text_form_of_a_vector(self) -> None:
        assert vectors.to_pgvector([0.5, -1.0, 1e-5]) == "[0.5,-1.0,1e-05]"

    @pytest.mark.parametrize("values", [[], [math.nan], [1.0, math.inf]])
    def test_only_finite_numbers_are_written(self, values: list[float]) -> None:
        with pytest.raises(ValueError, match="finite"):
            vectors.to_pgvector(values)
