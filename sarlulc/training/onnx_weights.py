"""A plugin ONNX model (exported by sarlulc.training.export) back into the torch network, to fine-tune it.

The bundled models ship as ONNX only. The exporter keeps most parameters under their torch names;
the others it rewrote while folding constants, and each is undone here from the node that uses it:

- a Linear's weight feeds its ``MatMul`` transposed;
- a Conv followed by BatchNorm (``ConvBNReLU``) was fused: the Conv holds W·γ/σ and a bias. The
  torch pair gets that weight and bias with the BatchNorm set to the identity (γ 1, mean 0, σ 1),
  so the network computes exactly what the ONNX file computes as long as the BatchNorm statistics
  stay frozen (:func:`train_keeping_batch_norm`; fine-tuning keeps them so, its γ and β still learn);
- a window attention's relative position bias table was gathered into an (N², heads) constant:
  the table is read back through the layer's own index.

The node names of the export (``/decoder/laterals.0/laterals.0.0/Conv``) say which module each
node belongs to. The network configuration is the named one whose parameters fit the file.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from ..inference.contract import ModelContract
from ..networks.configs import NAMED_CONFIGS
from ..networks.segmentor import Segmentor


class NotThisNetworkError(ValueError):
    """The ONNX file is not an export of the plugin's Swin + UPerNet network."""


def module_of(node_name: str) -> str:
    """Torch module path of an exported node: '/hr_stem/to_full/to_full.0/to_full.0.0/Conv' ->
    'hr_stem.to_full.0.0' (a scope inside a Sequential repeats its parent's name)."""
    path: list[str] = []
    for part in node_name.strip("/").split("/")[:-1]:
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        else:
            path.append(part)
    return ".".join(path)


def _candidate_configs(initialisers: dict[str, np.ndarray], num_classes: int):
    """Named configurations (with the paper's two switches on or off) that may fit the file."""
    embed = initialisers.get("encoder.patch_embed.weight")
    if embed is None:
        raise NotThisNetworkError("it has no Swin patch embedding (encoder.patch_embed.weight)")
    for config in NAMED_CONFIGS.values():
        if config.encoder.embed_dim != embed.shape[0]:
            continue
        for hr_injection in (True, False):
            for refine_up in (True, False):
                yield dataclasses.replace(config, hr_injection=hr_injection, refine_up=refine_up,
                                          num_classes=num_classes)


def _state_from_graph(model: Segmentor, graph: onnx.GraphProto, initialisers: dict[str, np.ndarray]) -> dict:
    """The torch state dict the ONNX graph's initialisers stand for (raises NotThisNetworkError)."""
    state = {name: value.detach().clone() for name, value in model.state_dict().items()}
    modules = dict(model.named_modules())
    filled: set[str] = set()

    def put(name: str, value: np.ndarray):
        if name not in state or tuple(state[name].shape) != value.shape:
            raise NotThisNetworkError(f"'{name}' {value.shape} has no place in the network")
        state[name] = torch.from_numpy(np.array(value, dtype=np.float32))
        filled.add(name)

    for name, value in initialisers.items():
        if name in state:
            put(name, value)
    for node in graph.node:
        inputs = [name for name in node.input if name in initialisers and name not in state]
        if not inputs:
            continue
        module_path = module_of(node.name)
        module = modules.get(module_path)
        if node.op_type == "MatMul" and isinstance(module, nn.Linear):
            put(f"{module_path}.weight", initialisers[inputs[0]].T)
        elif node.op_type == "Conv" and isinstance(module, nn.Conv2d):
            parent, _, index = module_path.rpartition(".")
            norm_path = f"{parent}.{int(index) + 1}"
            if not isinstance(modules.get(norm_path), nn.BatchNorm2d) or len(inputs) != 2:
                raise NotThisNetworkError(f"the fused convolution '{node.name}' has no batch norm in the network")
            put(f"{module_path}.weight", initialisers[inputs[0]])
            channels = initialisers[inputs[1]].shape[0]
            eps = modules[norm_path].eps
            put(f"{norm_path}.weight", np.ones(channels, np.float32))
            put(f"{norm_path}.bias", initialisers[inputs[1]])
            put(f"{norm_path}.running_mean", np.zeros(channels, np.float32))
            put(f"{norm_path}.running_var", np.full(channels, 1.0 - eps, np.float32))
        elif node.op_type == "Reshape" and hasattr(module, "bias_table"):
            gathered = initialisers[inputs[0]]
            table = np.zeros(tuple(module.bias_table.shape), np.float32)
            table[module.bias_index.reshape(-1).numpy()] = gathered.reshape(-1, table.shape[1])
            put(f"{module_path}.bias_table", table)
    trainable = {name for name, _ in model.named_parameters()} | {
        name for name in state if name.endswith(("running_mean", "running_var"))}
    missing = sorted(trainable - filled)
    if missing:
        raise NotThisNetworkError(f"{len(missing)} parameters of the network are not in it (first: {missing[0]})")
    return state


def segmentor_from_onnx(path) -> tuple[Segmentor, ModelContract]:
    """(network in eval mode, contract) of a plugin ONNX model; raises
    ModelContractError for a file without the contract and NotThisNetworkError for another network."""
    contract = ModelContract.from_onnx(path)
    graph = onnx.load(str(path)).graph
    initialisers = {item.name: numpy_helper.to_array(item) for item in graph.initializer}
    num_classes = 1 if contract.task == "water" else len(contract.classes)
    problems = []
    try:
        for config in _candidate_configs(initialisers, num_classes):
            model = Segmentor(config)
            try:
                state = _state_from_graph(model, graph, initialisers)
            except NotThisNetworkError as problem:
                problems.append(str(problem))
                continue
            model.load_state_dict(state)
            return model.eval(), contract
    except NotThisNetworkError as problem:
        problems.append(str(problem))
    raise NotThisNetworkError(
        f"'{pathlib.Path(path).name}' is not a model this plugin can fine-tune (an export of its Swin + UPerNet "
        f"network, {' or '.join(NAMED_CONFIGS)}): {problems[0] if problems else 'no configuration fits'}")


def train_keeping_batch_norm(model: nn.Module) -> nn.Module:
    """Training mode with every BatchNorm's running statistics kept as they are (their γ and β still
    learn): a network rebuilt from a fused export only equals it with these statistics, and
    fine-tuning with small batches is steadier without re-estimating them."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()
    return model
