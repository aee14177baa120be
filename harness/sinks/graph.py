"""The model's dataflow graph for TensorBoard's Graphs tab, recorded from one forward
pass: a node per call of a leaf module (conv1, pool, ...) and per torch function called
between them (flatten), each with its output shape and the nodes it reads from.

`SummaryWriter.add_graph` traces with torch.jit instead, whose first use imports about
0.6 s of modules: more than all the other TensorBoard logging of the quick-start sweep.
"""

from __future__ import annotations

from typing import Any

import torch
from tensorboard.compat.proto.attr_value_pb2 import AttrValue
from tensorboard.compat.proto.graph_pb2 import GraphDef
from tensorboard.compat.proto.node_def_pb2 import NodeDef
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from torch import nn
from torch.overrides import TorchFunctionMode


def graph_def(model: nn.Module, example: torch.Tensor) -> GraphDef:
    """The graph of `model` applied to `example`, under the scope of its class name."""
    recorder = _Recorder(type(model).__name__)
    recorder.add("input", "IO Node", (), example)
    handles = []
    for path, module in model.named_modules():
        if path and not any(module.children()):
            handles.append(module.register_forward_pre_hook(recorder.enter))
            handles.append(module.register_forward_hook(recorder.leave_hook(path)))
    try:
        with torch.no_grad(), recorder:
            output = model(example)
    finally:
        for handle in handles:
            handle.remove()
    recorder.add("output", "IO Node", (output,), output)
    return GraphDef(node=recorder.nodes)


class _Recorder(TorchFunctionMode):
    """Names the node that produced each tensor; calls inside a leaf module are that
    module's node, not nodes of their own."""

    def __init__(self, scope: str) -> None:
        super().__init__()
        self.scope = scope
        self.nodes: list[NodeDef] = []
        self.producers: dict[int, str] = {}  # id(tensor) -> node name
        self.alive: list[torch.Tensor] = []  # keeps ids from being reused mid-pass
        self.calls: dict[str, int] = {}
        self.depth = 0  # > 0 inside a leaf module

    def add(self, name: str, op: str, inputs: tuple[Any, ...], output: Any,
            detail: str = "") -> None:
        count = self.calls.get(name, 0)
        self.calls[name] = count + 1
        full = name if op == "IO Node" else f"{self.scope}/{name}"
        full += f"_{count}" if count else ""
        attr = {"_output_shapes": _shapes(output)}
        if detail:
            attr["attr"] = AttrValue(s=detail.encode())
        sources = [self.producers[id(t)] for t in _tensors(inputs) if id(t) in self.producers]
        self.nodes.append(NodeDef(name=full, op=op, input=list(dict.fromkeys(sources)),
                                  attr=attr))
        for tensor in _tensors((output,)):
            self.producers[id(tensor)] = full
            self.alive.append(tensor)

    def enter(self, module: nn.Module, inputs: tuple[Any, ...]) -> None:
        self.depth += 1

    def leave_hook(self, path: str) -> Any:
        def leave(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            self.depth -= 1
            self.add(path, type(module).__name__, inputs, output, detail=repr(module))
        return leave

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        result = func(*args, **(kwargs or {}))
        known = any(id(t) in self.producers for t in _tensors(args))
        if self.depth == 0 and known and isinstance(result, torch.Tensor):
            name = getattr(func, "__name__", "function")
            self.add(name, name, args, result)
        return result


def _tensors(values: tuple[Any, ...]) -> list[torch.Tensor]:
    found = []
    for value in values:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (tuple, list)):
            found.extend(_tensors(tuple(value)))
    return found


def _shapes(output: Any) -> AttrValue:
    shapes = [TensorShapeProto(dim=[TensorShapeProto.Dim(size=size) for size in t.shape])
              for t in _tensors((output,))]
    return AttrValue(list=AttrValue.ListValue(shape=shapes))
