"""The command-line form of an attack of ``aggregation.ATTACKS``: ``name`` or ``name:key=value``.

Parsed in one place for the testnet's attacker daemons and the Byzantine simulation.
"""

from __future__ import annotations

from dataclasses import dataclass

from aggregation import ATTACKS

__all__ = ["AttackSpec", "AttackSpecError", "parse_attack"]


class AttackSpecError(ValueError):
    """An attack string names no known attack or has a malformed parameter."""


@dataclass(frozen=True)
class AttackSpec:
    """An attack name in ``aggregation.ATTACKS`` plus keyword parameters.

    ``str(spec)`` is the command-line form ``name`` or ``name:key=value,key=value``.
    """

    name: str
    params: tuple[tuple[str, float], ...] = ()

    def __str__(self) -> str:
        if not self.params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v:g}" for k, v in self.params)

    @property
    def kwargs(self) -> dict[str, float]:
        """Parameters as a dict."""
        return dict(self.params)


def parse_attack(text: str) -> AttackSpec:
    """Parse ``name`` or ``name:key=value,...`` (values are floats) into an :class:`AttackSpec`.

    Raises
    ------
    AttackSpecError
        Unknown attack name or a malformed parameter.
    """
    name, _, rest = text.strip().partition(":")
    if name not in ATTACKS:
        raise AttackSpecError(f"unknown attack {name!r}; known: {sorted(ATTACKS)}")
    params: list[tuple[str, float]] = []
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        try:
            if not eq or not key:
                raise ValueError
            params.append((key.strip(), float(value)))
        except ValueError:
            raise AttackSpecError(
                f"attack {text!r}: parameter {item!r} is not key=<number>"
            ) from None
    return AttackSpec(name, tuple(params))
