"""Shopify's calculated query cost and the per-shop leaky bucket, as the sandbox applies them.

Cost rules (shopify.dev "rate limits", see docs/specs): scalar and enum fields cost 0, an object 1, a connection
2 + first × (cost of one node), every top-level mutation field 10. The requested cost must fit the bucket before
execution; the difference to the actual cost (a connection that returned fewer nodes than asked) is refunded after.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    is_leaf_type,
)

MAX_QUERY_COST = 1000
MUTATION_FIELD_COST = 10
CONNECTION_BASE_COST = 2
OBJECT_COST = 1


class CostBucket:
    """A leaky bucket of query-cost points: holds at most `maximum`, refills at `restore_rate` points a second.

    `clock` is injectable (tests pass a fake one). Thread-safe.
    """

    def __init__(self, maximum: float, restore_rate: float, clock: Callable[[], float] = time.monotonic):
        self.maximum = float(maximum)
        self.restore_rate = float(restore_rate)
        self.clock = clock
        self._level = float(maximum)
        self._at = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self.clock()
        if now > self._at:
            self._level = min(self.maximum, self._level + (now - self._at) * self.restore_rate)
        self._at = now

    def available(self) -> float:
        with self._lock:
            self._refill()
            return self._level

    def try_take(self, points: float) -> bool:
        """Take `points` if they fit what is available now; False (nothing taken) when they do not."""
        with self._lock:
            self._refill()
            if points > self._level:
                return False
            self._level -= points
            return True

    def refund(self, points: float) -> None:
        if points <= 0:
            return
        with self._lock:
            self._refill()
            self._level = min(self.maximum, self._level + points)

    def set_available(self, points: float) -> None:
        """Tests: put the bucket at a given level."""
        with self._lock:
            self._refill()
            self._level = max(0.0, min(self.maximum, float(points)))

    def seconds_until(self, points: float) -> float:
        """How long until `points` would fit (0 when they fit now)."""
        with self._lock:
            self._refill()
            missing = points - self._level
        return max(0.0, missing / self.restore_rate) if self.restore_rate > 0 else float("inf")

    def throttle_status(self) -> dict[str, Any]:
        available = self.available()
        return {
            "maximumAvailable": self.maximum,
            "currentlyAvailable": int(available),
            "restoreRate": self.restore_rate,
        }

    def __repr__(self) -> str:
        return f"CostBucket(maximum={self.maximum}, restore_rate={self.restore_rate}, available={self.available():.1f})"


def max_cost_message(cost: int) -> str:
    return (
        f"Query cost is {cost}, which exceeds the single query max cost limit ({MAX_QUERY_COST}).\n\n"
        "See https://shopify.dev/concepts/about-apis/rate-limits for more information on how the\n"
        "cost of a query is calculated.\n\n"
        "To query larger amounts of data with fewer limits, bulk operations should be used instead.\n"
        "See https://shopify.dev/tutorials/perform-bulk-operations-with-admin-api for usage details.\n"
    )


def _is_connection(type_name: str) -> bool:
    return type_name.endswith("Connection")


class OperationCost:
    """The cost of one operation of a parsed document, memoized per value of the variables it depends on.

    Only `first`/`last` arguments given as variables change the cost, so a document resent with new variables
    (a batch of upserts) is costed once. `node_cost(field_node)` gives the per-node cost of a connection field,
    which the resolvers use to refund what a short page did not return.
    """

    def __init__(self, schema: GraphQLSchema, operation: OperationDefinitionNode,
                 fragments: dict[str, FragmentDefinitionNode]):
        self.schema = schema
        self.operation = operation
        self.fragments = fragments
        self.is_mutation = operation.operation == OperationType.MUTATION
        self.var_defaults: dict[str, Any] = {}
        for vd in operation.variable_definitions or ():
            if isinstance(vd.default_value, IntValueNode):
                self.var_defaults[vd.variable.name.value] = int(vd.default_value.value)
        self._node_costs: dict[int, int] = {}
        self._var_names: set[str] = set()
        self._memo: dict[tuple, int] = {}
        # First walk (no variables) records which variables matter and each connection's node cost.
        self._walk_root({}, record=True)
        self.var_names: tuple[str, ...] = tuple(sorted(self._var_names))

    # -- public
    def requested(self, variables: dict[str, Any] | None) -> int:
        variables = variables or {}
        key = tuple(_hashable(variables.get(n)) for n in self.var_names)
        cost = self._memo.get(key)
        if cost is None:
            cost = self._walk_root(variables, record=False)
            if len(self._memo) < 256:
                self._memo[key] = cost
        return cost

    def node_cost(self, field_node: FieldNode) -> int:
        return self._node_costs.get(id(field_node), OBJECT_COST)

    # -- walking
    def _walk_root(self, variables: dict[str, Any], record: bool) -> int:
        if self.is_mutation:
            # Every top-level mutation field costs a flat 10, whatever it selects.
            return MUTATION_FIELD_COST * sum(1 for _ in self._fields(self.operation.selection_set))
        root = self.schema.query_type
        return self._selection_cost(root, self.operation.selection_set, variables, record)

    def _fields(self, selection_set: SelectionSetNode | None):
        """Field nodes of a selection set with fragments flattened (yields (type_condition or None, FieldNode))."""
        if selection_set is None:
            return
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                yield None, sel
            elif isinstance(sel, InlineFragmentNode):
                cond = sel.type_condition.name.value if sel.type_condition else None
                for c, f in self._fields(sel.selection_set):
                    yield c or cond, f
            elif isinstance(sel, FragmentSpreadNode):
                frag = self.fragments.get(sel.name.value)
                if frag is not None:
                    cond = frag.type_condition.name.value
                    for c, f in self._fields(frag.selection_set):
                        yield c or cond, f

    def _selection_cost(self, parent_type, selection_set, variables, record) -> int:
        total = 0
        for cond, node in self._fields(selection_set):
            name = node.name.value
            if name.startswith("__"):
                continue
            ptype = self.schema.get_type(cond) if cond else parent_type
            fields = getattr(ptype, "fields", None) or {}
            fdef = fields.get(name)
            if fdef is None:
                continue
            total += self._field_cost(fdef, node, variables, record)
        return total

    def _field_cost(self, fdef, node: FieldNode, variables, record) -> int:
        named = get_named_type(fdef.type)
        if is_leaf_type(named):
            return 0
        if _is_connection(named.name):
            size = self._arg_int(node, "first", variables, record)
            if size is None:
                size = self._arg_int(node, "last", variables, record)
            per_node = self._connection_node_cost(named, node, variables, record)
            return CONNECTION_BASE_COST + (size or 0) * per_node
        return OBJECT_COST + self._selection_cost(named, node.selection_set, variables, record)

    def _connection_node_cost(self, conn_type, node: FieldNode, variables, record) -> int:
        # One node costs what its selection costs, whether reached through `nodes` or `edges { node }`
        # (the edge wrapper and pageInfo are free; selecting both paths is not charged twice).
        per_node = OBJECT_COST
        for _cond, sub in self._fields(node.selection_set):
            fdef = conn_type.fields.get(sub.name.value)
            if fdef is None:
                continue
            if sub.name.value == "nodes":
                per_node = max(per_node, self._field_cost(fdef, sub, variables, record))
            elif sub.name.value == "edges":
                edge_type = get_named_type(fdef.type)
                for _c, edge_sub in self._fields(sub.selection_set):
                    edef = edge_type.fields.get(edge_sub.name.value)
                    if edef is not None and edge_sub.name.value == "node":
                        per_node = max(per_node, self._field_cost(edef, edge_sub, variables, record))
        if record:
            self._node_costs[id(node)] = per_node
        return per_node

    def _arg_int(self, node: FieldNode, name: str, variables, record) -> int | None:
        for arg in node.arguments or ():
            if arg.name.value != name:
                continue
            value = arg.value
            if isinstance(value, IntValueNode):
                return int(value.value)
            if isinstance(value, VariableNode):
                var = value.name.value
                if record:
                    self._var_names.add(var)
                got = variables.get(var, self.var_defaults.get(var))
                return got if isinstance(got, int) and not isinstance(got, bool) else None
        return None


def _hashable(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return repr(value)
    return value
