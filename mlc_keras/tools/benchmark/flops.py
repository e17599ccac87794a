"""FLOPs of a TensorFlow graph, counted from its static shapes (imports nothing from the package).

``count_graph_flops`` walks a graph and counts 2 * multiply-accumulates of the
ops that carry the arithmetic of this model -- Conv2D, Conv2DBackpropInput
(also the forward op of a transposed conv), Conv2DBackpropFilter, MatMul and
BatchMatMul{,V2,V3} -- from the static shapes in the graph. Elementwise ops,
normalisation and the optimizer update are not counted (they are memory
bound and a few per cent of the arithmetic). The walker

  * descends into function bodies (PartitionedCall / StatefulPartitionedCall,
    calls by function name, If / Case branches -- the largest branch counts --
    and While bodies, which count once per loop and are reported);
  * counts only the ops that run: TensorFlow prunes a function body to what
    its outputs, control outputs and stateful ops depend on, and so does the
    walker (``prune=True``). A persistent GradientTape leaves dead gradient ops
    in the graph, e.g. the filter gradients of D when only G's gradients are
    asked for.

TensorFlow's own profiler (``tf.compat.v1.profiler.profile`` with
``float_operation()``, wrapped by ``profiler_flops``) registers flop counts
for Conv2D, Conv2DBackpropInput, Conv2DBackpropFilter and MatMul, and agrees
with the walker on a flat graph (the tests check it; its BatchMatMul count
reads a transpose_a attribute that BatchMatMul does not have, so it is wrong
with adj_x -- the walker reads adj_x), but it only visits the
top-level nodes: ops inside function bodies (a nested tf.function such as the
step Keras builds for ``fit``, or a tf.cond / tf.while_loop) are not counted,
and it cannot tell dead ops from live ones. The benchmark therefore reports
the walker's count and prints the profiler's per-type figures on the same
(unpruned) graph as a cross-check.
"""

import dataclasses
import math

MATMUL_TYPES = frozenset({"MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"})
CONV_TYPES = frozenset({"Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter"})
COUNTED_TYPES = CONV_TYPES | MATMUL_TYPES
_IF_TYPES = frozenset({"If", "StatelessIf"})
_CASE_TYPES = frozenset({"Case", "StatelessCase"})
_WHILE_TYPES = frozenset({"While", "StatelessWhile"})
_BACKWARD_SCOPE = "gradient_tape"  # the name scope of GradientTape.gradient's ops


@dataclasses.dataclass
class FlopCount:
    """FLOPs (2 x multiply-accumulates) of the counted op types in a graph.

    total: all counted FLOPs; by_type: per op type; backward: the part under
    GradientTape.gradient's name scope (the rest is the forward pass);
    ops: counted op instances per type; dead: FLOPs of ops that do not run and
    were left out (prune=True); while_loops: While bodies counted once each;
    unresolved: counted-type ops whose shapes were not static (left out).
    """

    total: int = 0
    by_type: dict = dataclasses.field(default_factory=dict)
    ops: dict = dataclasses.field(default_factory=dict)
    backward: int = 0
    dead: int = 0
    while_loops: int = 0
    unresolved: list = dataclasses.field(default_factory=list)

    @property
    def forward(self):
        return self.total - self.backward

    def add(self, op_type, flops, backward):
        self.total += flops
        self.by_type[op_type] = self.by_type.get(op_type, 0) + flops
        self.ops[op_type] = self.ops.get(op_type, 0) + 1
        if backward:
            self.backward += flops

    def merge(self, other):
        self.total += other.total
        self.backward += other.backward
        self.dead += other.dead
        self.while_loops += other.while_loops
        self.unresolved += other.unresolved
        for t, v in other.by_type.items():
            self.by_type[t] = self.by_type.get(t, 0) + v
        for t, v in other.ops.items():
            self.ops[t] = self.ops.get(t, 0) + v

    def as_dict(self):
        return {"total": self.total, "forward": self.forward, "backward": self.backward,
                "by_type": dict(sorted(self.by_type.items())),
                "ops": dict(sorted(self.ops.items())),
                "dead": self.dead, "while_loops": self.while_loops,
                "unresolved": list(self.unresolved)}


def _dims(shape):
    """A static TensorShape -> list of ints, or None when any dim is unknown."""
    if shape.rank is None:
        return None
    dims = shape.as_list()
    return None if any(d is None for d in dims) else dims


def _prod(values):
    return math.prod(int(v) for v in values)


def op_flops(op):
    """2 x MACs of one Conv2D / Conv2DBackpropInput / Conv2DBackpropFilter /
    MatMul / BatchMatMul* op from its static shapes; None for any other op type.
    Raises ValueError when a needed shape is not static.

    Every conv form does the MACs of its forward convolution: one per element
    of the forward output (= out_backprop) per filter tap (kh * kw * Cin, the
    filter's per-group input depth), whatever the data format or padding.
    """
    t = op.type
    if t not in COUNTED_TYPES:
        return None

    def static(tensor, what):
        dims = _dims(tensor.shape)
        if dims is None:
            raise ValueError(f"{t} {op.name}: {what} shape {tensor.shape} is not static")
        return dims

    if t == "Conv2D":
        out = static(op.outputs[0], "output")
        kh, kw, cin, _ = static(op.inputs[1], "filter")
        return 2 * _prod(out) * kh * kw * cin
    if t == "Conv2DBackpropInput":  # inputs: input_sizes, filter, out_backprop
        kh, kw, cin, _ = static(op.inputs[1], "filter")
        return 2 * _prod(static(op.inputs[2], "out_backprop")) * kh * kw * cin
    if t == "Conv2DBackpropFilter":  # inputs: input, filter_sizes, out_backprop -> filter grad
        kh, kw, cin, _ = static(op.outputs[0], "filter")
        return 2 * _prod(static(op.inputs[2], "out_backprop")) * kh * kw * cin
    a = static(op.inputs[0], "a")
    out = static(op.outputs[0], "output")
    if t == "MatMul":
        k = a[0] if op.get_attr("transpose_a") else a[1]
    else:  # BatchMatMul*: adj_x (BatchMatMul has no transpose_a attribute)
        k = a[-2] if op.get_attr("adj_x") else a[-1]
    return 2 * _prod(out) * k


def _is_stateful(op):
    try:
        return op.op_def.is_stateful
    except Exception:  # noqa: BLE001 - a call by function name has no registered OpDef
        return True


def live_ops(graph):
    """The ops TensorFlow runs when it calls ``graph`` as a function: those its
    outputs, control outputs and stateful ops depend on (as in TensorFlow's
    PruneFunctionBody). A graph without declared outputs keeps every op."""
    outputs = list(getattr(graph, "outputs", None) or [])
    control = list(getattr(graph, "control_outputs", None) or [])
    if not outputs and not control:
        return set(graph.get_operations())
    seeds = [t.op for t in outputs] + control
    seeds += [op for op in graph.get_operations()
              if op.type != "Placeholder" and _is_stateful(op)]
    live, stack = set(), list(seeds)
    while stack:
        op = stack.pop()
        if op in live:
            continue
        live.add(op)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return live


def _function_graph(graph, name, call_op):
    """The FuncGraph of library function ``name`` as seen from ``graph``."""
    g = graph
    while g is not None:
        fn = g._get_function(name)  # noqa: SLF001 - no public lookup by name
        if fn is not None:
            fg = getattr(fn, "graph", None)
            if fg is not None:
                return fg
            from tensorflow.python.framework import function_def_to_graph

            fdef = getattr(fn, "cached_definition", None) or fn.definition
            shapes = [t.shape for t in call_op.inputs]
            return function_def_to_graph.function_def_to_graph(fdef, input_shapes=shapes)
        g = getattr(g, "outer_graph", None)
    raise ValueError(f"function {name!r} (called by {call_op.name}) is not in the graph's library")


def _func_attrs(op):
    """[(attr name, [function names])] of an op's function-valued attributes."""
    found = []
    for key, value in op.node_def.attr.items():
        if value.HasField("func"):
            found.append((key, [value.func.name]))
        elif value.HasField("list") and value.list.func:
            found.append((key, [f.name for f in value.list.func]))
    return found


def count_graph_flops(graph, prune=True, _backward=False, _depth=0):
    """FlopCount of ``graph`` (a tf.Graph / FuncGraph), nested bodies included.

    prune: count only ops that run (see ``live_ops``); False counts every node,
    as TensorFlow's profiler does.
    """
    if _depth > 64:
        raise ValueError("function nesting deeper than 64 levels")
    count = FlopCount()
    live = live_ops(graph) if prune else None
    for op in graph.get_operations():
        backward = _backward or _BACKWARD_SCOPE in op.name
        is_live = live is None or op in live
        if op.type in COUNTED_TYPES:
            try:
                flops = op_flops(op)
            except ValueError as e:
                count.unresolved.append(str(e))
                continue
            if is_live:
                count.add(op.type, flops, backward)
            else:
                count.dead += flops
            continue
        bodies = _func_attrs(op)
        if graph._is_function(op.type):  # noqa: SLF001 - a direct call by function name
            bodies.append(("call", [op.type]))
        if not bodies:
            continue

        def sub(name):
            fg = _function_graph(graph, name, op)
            return count_graph_flops(fg, prune, backward, _depth + 1)

        if op.type in _IF_TYPES or op.type in _CASE_TYPES:
            branch_keys = ("then_branch", "else_branch", "branches")
            names = [n for key, ns in bodies if key in branch_keys for n in ns]
            inner = max((sub(n) for n in names), key=lambda c: c.total, default=FlopCount())
        else:
            inner = FlopCount()
            for _, names in bodies:
                for n in names:
                    inner.merge(sub(n))
            if op.type in _WHILE_TYPES:
                inner.while_loops += 1
        if is_live:
            count.merge(inner)
        else:
            count.dead += inner.total + inner.dead
    return count


def profiler_flops(graph):
    """TensorFlow's profiler on ``graph``: (total float ops of every registered
    op type, {op type: float ops}). Top-level nodes only, dead ones included."""
    import tensorflow as tf
    from tensorflow.python.util import deprecation

    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    with deprecation.silence():
        result = tf.compat.v1.profiler.profile(graph, cmd="op", options=options)
    # The 'op' view is a chain root -> type -> type ...: float_ops is each
    # type's own count, total_float_ops includes the rest of the chain.
    by_type, stack = {}, list(result.children)
    while stack:
        node = stack.pop()
        if node.float_ops:
            by_type[node.name] = by_type.get(node.name, 0) + int(node.float_ops)
        stack.extend(node.children)
    return int(result.total_float_ops), by_type
