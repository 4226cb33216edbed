from decimal import ROUND_HALF_UP, Decimal

import pytest

from app.core.pricing import COST_QUANTUM, cost_usd


def cost(input_price: str, output_price: str, *, input_tokens: int, output_tokens: int) -> Decimal:
    return cost_usd(
        input_price_per_million=Decimal(input_price),
        output_price_per_million=Decimal(output_price),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )


class TestCostUsd:
    def test_tokens_times_price_per_million(self) -> None:
        result = cost("2.50", "10.00", input_tokens=1000, output_tokens=500)
        assert result == Decimal("0.0075")
        assert format(result, "f") == "0.007500000000"

    def test_always_twelve_places(self) -> None:
        result = cost("0.15", "0.60", input_tokens=0, output_tokens=0)
        assert result == 0
        assert result.as_tuple().exponent == -12

    def test_exact_where_float_is_not(self) -> None:
        result = cost("0.1", "0.000001", input_tokens=3, output_tokens=3)
        assert format(result, "f") == "0.000000300003"
        # The same sum in floats is already off before any rounding.
        assert Decimal(3 * 0.1 / 1_000_000 + 3 * 0.000001 / 1_000_000) != result

    def test_exact_at_the_largest_price_the_catalog_takes(self) -> None:
        # 18 digits, 6 of them places: more than a float holds.
        price = "123456789012.345678"
        result = cost(price, "0", input_tokens=1, output_tokens=0)
        assert result == Decimal("123456.789012345678")
        as_float = Decimal(1 * float(price) / 1_000_000)
        assert as_float.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP) != result

    def test_huge_token_counts_stay_exact(self) -> None:
        result = cost("0.000001", "99.999999", input_tokens=10**15, output_tokens=10**12 + 1)
        assert result == Decimal("1000") + Decimal("99999999") + Decimal("0.000099999999")

    def test_rounds_half_up_at_the_twelfth_place(self) -> None:
        # Stored prices have at most 6 places, so only a price built in memory gets here;
        # half of 1e-12 goes up, where banker's rounding would go down to 0.
        assert cost("0.0000005", "0", input_tokens=1, output_tokens=0) == Decimal("0.000000000001")
        assert cost("0.0000004", "0", input_tokens=1, output_tokens=0) == 0

    @pytest.mark.parametrize(("input_tokens", "output_tokens"), [(-1, 0), (0, -1)])
    def test_negative_tokens_are_refused(self, input_tokens: int, output_tokens: int) -> None:
        with pytest.raises(ValueError, match="negative"):
            cost("1", "1", input_tokens=input_tokens, output_tokens=output_tokens)
