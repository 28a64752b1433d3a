"""The torch-free rule names agree with the registry, and importing them loads no torch."""

from __future__ import annotations

import subprocess
import sys

import aggregation
from aggregation import BASE_RULES, PRE_AGGREGATORS, RULES
from aggregation.names import BASE_RULE_NAMES, PRE_AGGREGATOR_NAMES, RULE_NAMES, composed_name
from node.training import genesis


def test_names_are_the_registry_keys() -> None:
    assert set(RULES) == RULE_NAMES
    assert tuple(BASE_RULES) == BASE_RULE_NAMES
    assert tuple(PRE_AGGREGATORS) == PRE_AGGREGATOR_NAMES
    for pre in PRE_AGGREGATOR_NAMES:
        for rule in BASE_RULE_NAMES:
            assert composed_name(pre, rule) in RULES


def test_genesis_validates_against_the_same_names() -> None:
    assert genesis.RULE_NAMES is RULE_NAMES  # one object: there is no second copy
    assert aggregation.RULE_NAMES is RULE_NAMES


def test_names_import_no_torch() -> None:
    code = (
        "import sys\n"
        "from aggregation.names import RULE_NAMES\n"
        "import aggregation\n"
        "assert 'nnm+krum' in aggregation.RULE_NAMES\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_submodule_never_hides_its_function() -> None:
    """``aggregation.krum`` is the function even after ``import aggregation.krum``.

    Run in a fresh interpreter: the lazy face binds names on first use, so the order of
    imports matters and this process has already used them.
    """
    code = (
        "import types\n"
        "import aggregation.krum, aggregation.nnm, aggregation.bulyan\n"
        "from aggregation.krum import krum\n"
        "import aggregation\n"
        "assert aggregation.krum is krum\n"
        "from aggregation import bristle, bulyan, geometric_median, nnm\n"
        "for f in (bristle, bulyan, geometric_median, nnm):\n"
        "    assert not isinstance(f, types.ModuleType), f\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_attribute_is_an_attribute_error() -> None:
    assert not hasattr(aggregation, "no_such_rule")
