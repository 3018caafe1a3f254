"""The collectives of a compiled XLA program, read from its HLO text, with the mesh axes they run over.

    compiled = jax.jit(step, ...).lower(state, batch).compile()
    for c in hlo_collectives(compiled.as_text(), mesh_shape(mesh)):
        print(c.kind, c.axes, c.shapes, c.count)   # all-reduce ('data', 'fsdp') ((32, 128),) 2

What :func:`hlo_collectives` reads: every ``all-reduce``, ``all-gather``,
``reduce-scatter``, ``all-to-all`` and ``collective-permute`` instruction of
the optimised module (tuple-shaped ones, which XLA's combiners make from
several, give one array each), its operand or result shapes, and its replica
groups, turned into the mesh axes along which the devices of a group
differ. ``count`` is how many times the instruction runs per call: the
product of the known trip counts of the ``while`` loops around it (a
``lax.scan`` over layers or micro-batches). The replica groups come in
three spellings, all read: explicit ``{{0,1},{2,3}}``, iota
``[2,2]<=[2,2]T(1,0)`` and the mesh form ``mesh['axis_0'=2,'axis_1'=2]
{'axis_0'}`` (with an optional ``device_ids=(...)``). Device ``i`` of a
group is the i-th device of the jitted function's mesh, in row-major order.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["HloCollective", "hlo_collectives"]

KINDS = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4,
                "f32": 4, "s64": 8, "u64": 8, "f64": 8}


@dataclasses.dataclass(frozen=True)
class HloCollective:
    """One collective instruction: ``kind``, the mesh ``axes`` its groups span (in mesh order), the
    ``shapes`` and ``dtypes`` of its results (one per array it moves), the ``count`` of times it runs
    per call, the number of devices in a group, its HLO ``name`` and the JAX ``op_name`` it came from."""

    kind: str
    axes: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    count: int
    group_size: int
    name: str
    op_name: str

    @property
    def array_bytes(self) -> tuple[int, ...]:
        """Bytes of each whole array: the result of an all-gather, the input of a reduce-scatter (its result
        times the group size), the operand of the others."""
        scale = self.group_size if self.kind == "reduce-scatter" else 1
        return tuple(scale * int(np.prod(s, dtype=np.int64)) * _DTYPE_BYTES.get(d, 4)
                     for s, d in zip(self.shapes, self.dtypes))


_COMPUTATION = re.compile(r"^(ENTRY\s+)?%([\w.\-]+)\s.*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(ROOT\s+)?%([\w.\-]+)\s*=\s*(.*)$")
_ARRAY = re.compile(r"\b(pred|[su]\d+|bf16|f16|f32|f64)\[([\d,]*)\]")


def _split_shape_and_op(rest: str) -> tuple[str, str, str]:
    """``"(f32[2], f32[]) all-reduce(%a, %b), attrs"`` -> (shape text, opcode, after the opcode)."""
    if rest.startswith("("):  # a tuple shape: up to its matching parenthesis
        depth = 0
        for i, ch in enumerate(rest):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0:
                shape, tail = rest[: i + 1], rest[i + 1:].lstrip()
                break
        else:
            return rest, "", ""
    else:
        shape, _, tail = rest.partition(" ")
    m = re.match(r"([\w\-]+)\((.*)$", tail)
    return (shape, m.group(1), m.group(2)) if m else (shape, "", tail)


def _arrays(text: str) -> list[tuple[str, tuple[int, ...]]]:
    return [(d, tuple(int(n) for n in dims.split(",") if n)) for d, dims in _ARRAY.findall(text)]


def _iota(dims: Sequence[int], perm: Sequence[int] | None) -> np.ndarray:
    ids = np.arange(int(np.prod(dims))).reshape(dims)
    return ids.transpose(perm) if perm is not None else ids


def _ints(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", text)]


def _replica_groups(attrs: str, num_devices: int) -> list[list[int]]:
    """The device groups of a collective's attributes (``replica_groups=`` or ``source_target_pairs=``)."""
    m = re.search(r"source_target_pairs=\{(.*?)\}\}", attrs)
    if m:
        return [_ints(pair) for pair in re.findall(r"\{([\d,]+)\}", m.group(1) + "}")]
    m = re.search(r"replica_groups=mesh\[([^\]]*)\](?:,\s*device_ids=\(([^)]*(?:\([^)]*\))?[^)]*)\))?\s*\{([^}]*)\}",
                  attrs)
    if m:
        axes = re.findall(r"'([^']+)'=(\d+)", m.group(1))
        names, sizes = [a for a, _ in axes], [int(n) for _, n in axes]
        ids = np.arange(int(np.prod(sizes)))
        if m.group(2):
            spec = m.group(2).strip()
            it = re.match(r"\[([\d,]+)\](?:T\(([\d,]+)\))?$", spec)
            ids = (_iota(_ints(it.group(1)), _ints(it.group(2)) if it.group(2) else None).reshape(-1) if it
                   else np.array(_ints(spec)))
        grid = ids.reshape(sizes)
        over = [names.index(a) for a in re.findall(r"'([^']+)'", m.group(3))]
        rest = [i for i in range(len(sizes)) if i not in over]
        grid = grid.transpose(rest + over).reshape(-1, int(np.prod([sizes[i] for i in over])) if over else 1)
        return grid.tolist()
    m = re.search(r"replica_groups=\[(\d+),(\d+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?", attrs)
    if m:
        groups, size = int(m.group(1)), int(m.group(2))
        perm = _ints(m.group(4)) if m.group(4) else None
        return _iota(_ints(m.group(3)), perm).reshape(groups, size).tolist()
    m = re.search(r"replica_groups=\{((?:\{[\d,]*\},?)*)\}", attrs)
    if m and m.group(1):
        return [_ints(g) for g in re.findall(r"\{([\d,]*)\}", m.group(1))]
    return [list(range(num_devices))]  # replica_groups={}: every device


def _axes(groups: list[list[int]], mesh_shape: Mapping[str, int], pairs: bool) -> tuple[str, ...]:
    """The mesh axes along which the devices of a group differ."""
    names, sizes = list(mesh_shape), list(mesh_shape.values())
    varying: set[str] = set()
    for group in groups:
        coords = np.array([np.unravel_index(d, sizes) for d in group])  # (members, axes)
        if pairs and len(group) == 2 and group[0] == group[1]:
            continue
        varying |= {names[i] for i in range(len(names)) if len(set(coords[:, i])) > 1}
    return tuple(a for a in names if a in varying)


def hlo_collectives(hlo_text: str, mesh_shape: Mapping[str, int]) -> list[HloCollective]:
    """Every collective of an optimised HLO module (``compiled.as_text()``); see the module docstring."""
    computations: dict[str, list[str]] = {}
    entry, current = None, None
    for line in hlo_text.splitlines():
        m = _COMPUTATION.match(line)
        if m and not line.startswith(" "):
            current = m.group(2)
            computations[current] = []
            entry = current if m.group(1) else entry
            continue
        if current is not None:
            if line.strip() == "}":
                current = None
            else:
                computations[current].append(line)
    if entry is None:
        raise ValueError("hlo_collectives: no ENTRY computation in the HLO text")
    num_devices = int(np.prod(list(mesh_shape.values())))
    found: list[HloCollective] = []

    def walk(name: str, multiplicity: int, seen: tuple[str, ...]) -> None:
        if name in seen or name not in computations:
            return
        for line in computations[name]:
            m = _INSTRUCTION.match(line)
            if not m:
                continue
            shape, opcode, tail = _split_shape_and_op(m.group(3))
            base = opcode.removesuffix("-start")
            if base in KINDS and not opcode.endswith("-done"):
                arrays = _arrays(shape)
                op = re.search(r'op_name="([^"]*)"', tail)
                groups = _replica_groups(tail, num_devices)
                found.append(HloCollective(
                    kind=base, axes=_axes(groups, mesh_shape, base == "collective-permute"),
                    shapes=tuple(s for _, s in arrays), dtypes=tuple(d for d, _ in arrays),
                    count=multiplicity, group_size=max(len(g) for g in groups), name=m.group(2),
                    op_name=op.group(1) if op else ""))
            if opcode == "while":
                trips = re.search(r'"known_trip_count":\{"n":"(\d+)"\}', tail)
                n = int(trips.group(1)) if trips else 1
                body = re.search(r"body=%([\w.\-]+)", tail)
                cond = re.search(r"condition=%([\w.\-]+)", tail)
                if body:
                    walk(body.group(1), multiplicity * n, (*seen, name))
                if cond:
                    walk(cond.group(1), multiplicity * (n + 1), (*seen, name))
            else:
                callees = re.findall(r"(?:to_apply|calls)=%([\w.\-]+)", tail)
                branches = re.search(r"branch_computations=\{([^}]*)\}", tail)
                callees += re.findall(r"%([\w.\-]+)", branches.group(1)) if branches else []
                for callee in callees:
                    walk(callee, multiplicity, (*seen, name))

    walk(entry, 1, ())
    return found
