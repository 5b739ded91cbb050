"""Account ranges: how ``SHARDS`` mapped tasks split one date's bulk listing between them.

Shard k of n holds the accounts whose id, as a 128-bit number, lies in [k·2¹²⁸/n, (k+1)·2¹²⁸/n):
equal slices of the id space, so random (v4) ids spread evenly. A shard asks the engine for its
range only (``account_from``/``account_to``, an addition to contracts.md: README) and, whatever the
engine sends, keeps only the items of its range, so an engine that ignores the parameters costs
each shard the whole listing but never loses or doubles an item. An item whose account id is not a
UUID belongs to the first range (where it becomes that shard's reject). With one shard there is no
range: the listing is fetched exactly as contracts.md has it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cached_property

from investment_jobs.ml_engine.validation import CANONICAL_UUID

MAX_SHARDS = 64
_SPACE = 1 << 128


@dataclass(frozen=True)
class AccountRange:
    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"the shard count must be between 1 and {MAX_SHARDS}, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} does not exist among {self.count}")

    @cached_property
    def lower(self) -> str | None:
        """The first account id of the range (canonical text), None for the first range."""
        return None if self.index == 0 else str(uuid.UUID(int=self.index * _SPACE // self.count))

    @cached_property
    def upper(self) -> str | None:
        """The first account id after the range, None for the last range."""
        return None if self.index == self.count - 1 else str(uuid.UUID(int=(self.index + 1) * _SPACE // self.count))

    @property
    def label(self) -> str:
        """How an operator sees the shard (the mapped task's name): which ids it holds."""
        if self.count == 1:
            return "every account"
        lower, upper = self.lower or "0" * 8, self.upper[:8] if self.upper else "end"
        return f"shard {self.index + 1} of {self.count}: ids {lower[:8]}… to {upper}"

    def query(self) -> dict[str, str]:
        """The listing's parameters for this range (none for the whole listing)."""
        bounds = {"account_from": self.lower, "account_to": self.upper}
        return {name: value for name, value in bounds.items() if value is not None}

    def holds(self, account_id: str) -> bool:
        """Whether an item of ``account_id`` (canonical text as validation gives it, or the engine's
        text when it is not a UUID) is this shard's."""
        if self.count == 1:
            return True
        if not CANONICAL_UUID.fullmatch(account_id):
            return self.index == 0
        return (self.lower is None or self.lower <= account_id) and (self.upper is None or account_id < self.upper)


def account_ranges(count: int) -> list[AccountRange]:
    return [AccountRange(i, count) for i in range(count)]
