"""Who issues invoices: printed on every invoice and snapshotted into it at issue."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Issuer:
    name: str
    address: str
    tax_id: str
