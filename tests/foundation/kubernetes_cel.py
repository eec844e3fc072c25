"""The Kubernetes CEL library functions the CRD's rules call, for cel-python.

kube-apiserver compiles CRD rules with Kubernetes' own CEL libraries besides the standard ones
(k8s.io/apiserver/pkg/cel/library). Our rules use the quantity library (quantity.go, Kubernetes
1.28+ for stored rules, 1.29+ for new ones): `quantity(string)`, `isQuantity(string)`, and on a
quantity `compareTo(quantity)`, `sub(int)` / `sub(quantity)` and `asApproximateFloat()`. Here
they are given to cel-python over `k8s.parse_quantity`, the transcription of
resource.ParseQuantity that tests/foundation/test_byte_quantities.py holds to Go's own answers.
Go's arithmetic on quantities is exact (inf.Dec), as Decimal's is here; asApproximateFloat is
float64 (Go multiplies by a power of ten, this rounds once: the rules that use it do not depend
on the last bit).
"""

from __future__ import annotations

import functools
from decimal import Context, Decimal, localcontext
from typing import Any

import celpy
from celpy import celtypes
from mfpo_core import k8s


class Quantity:
    """A resource.Quantity as CEL sees it (apiservercel.Quantity)."""

    def __init__(self, amount: Decimal):
        self.amount = amount

    def __repr__(self) -> str:
        return f"Quantity({self.amount})"


def _exact(operation: Any) -> Decimal:
    with localcontext(Context(prec=400, Emax=10**9, Emin=-(10**9))):
        return operation()


def quantity(text: Any) -> Any:
    try:
        return Quantity(k8s.parse_quantity(str(text)))
    except k8s.QuantityError as err:
        return celpy.CELEvalError(str(err), ValueError, (str(text),))


def is_quantity(text: Any) -> Any:
    try:
        k8s.parse_quantity(str(text))
    except k8s.QuantityError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


def compare_to(a: Quantity, b: Quantity) -> Any:
    return celtypes.IntType((a.amount > b.amount) - (a.amount < b.amount))


def sub(a: Quantity, b: Any) -> Quantity:
    other = b.amount if isinstance(b, Quantity) else Decimal(int(b))
    return Quantity(_exact(lambda: a.amount - other))


def as_approximate_float(a: Quantity) -> Any:
    return celtypes.DoubleType(float(a.amount))


FUNCTIONS = {
    "quantity": quantity,
    "isQuantity": is_quantity,
    "compareTo": compare_to,
    "sub": sub,
    "asApproximateFloat": as_approximate_float,
}


@functools.cache
def program(rule: str) -> celpy.Runner:
    """A compiled rule with the Kubernetes functions it may call."""
    env = celpy.Environment()
    return env.program(env.compile(rule), functions=FUNCTIONS)
