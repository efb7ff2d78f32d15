"""Domain errors (pure): a refusal named below the request field that carried it."""

from __future__ import annotations

from server.domain.errors import FieldViolation, InvalidArgument, within


def test_within_names_every_violation_below_the_prefix_and_keeps_the_rest():
    error = InvalidArgument(
        "id must match",
        reason="BAD_ID",
        field="id",
        violations=(FieldViolation("name", "name is required"),),
        metadata={"limit": "64"},
    )
    moved = within(error, "meter")
    assert isinstance(moved, InvalidArgument)
    assert moved.message == "meter.id must match"
    assert moved.reason == "BAD_ID"
    assert moved.violations == (
        FieldViolation("meter.id", "meter.id must match"),
        FieldViolation("meter.name", "meter.name is required"),
    )
    assert moved.metadata == {"limit": "64"}
    assert within(InvalidArgument("x bad", field="x"), "plan").reason == "INVALID_ARGUMENT"
