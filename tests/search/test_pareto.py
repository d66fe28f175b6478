from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from irpass.search.pareto import pareto_front


def test_known_front() -> None:
    points = [(10.0, 0.9), (5.0, 0.8), (7.0, 0.85), (6.0, 0.7), (12.0, 0.95), (11.0, 0.9)]
    assert pareto_front(points) == [1, 2, 0, 4]


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), max_size=30))
def test_front_is_exactly_the_non_dominated_points(raw: list[tuple[int, int]]) -> None:
    points = [(float(c), float(q)) for c, q in raw]
    front = set(pareto_front(points))

    def dominated(i: int) -> bool:
        ci, qi = points[i]
        return any(cj <= ci and qj >= qi and (cj, qj) != (ci, qi) for cj, qj in points)

    assert front == {i for i in range(len(points)) if not dominated(i)}
