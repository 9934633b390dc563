"""Write a compute and weight proxy of one ViT-GPT2 merged-decoder step.

The real int8 decoder cannot be fetched on the project's machines, so
bench/caption_test.go (BenchmarkCaptionStepProxy) times this stand-in to say
how long a real decoder step takes, against which the pipeline's per-step
overhead is measured. It has the real model's int8 matrices and their
shapes, dynamically quantised like the Xenova export (DynamicQuantizeLinear +
MatMulInteger), about 150 MB of weights in all:

  per layer (12): qkv 768x2304, attention out 768x768, cross-attention query
  768x768 and out 768x768, MLP 768x3072 and 3072x768, all on the B new
  tokens; cross-attention key/value 768x1536 on the B*197 encoder positions
  (GPT-2's cross-attention recomputes them every step: its cache holds only
  self-attention);
  lm_head 768x50257 on the B tokens.

Attention itself, layer norms, GELU and the cache concatenation are left
out, so the proxy is a lower bound of a real step.

Usage (Debian's python has onnx and numpy):
  /usr/bin/python3 models/caption/testdata/step_proxy.py /tmp/step_proxy.onnx
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.RandomState(0)
nodes, inits = [], []


def qmatmul(x, k, n, tag):
    """x @ W for an int8 W [k,n], with x quantised on the fly."""
    inits.append(numpy_helper.from_array(rng.randint(-127, 128, size=(k, n)).astype(np.int8), tag + "_w"))
    nodes.append(helper.make_node("DynamicQuantizeLinear", [x], [tag + "_q", tag + "_s", tag + "_z"]))
    nodes.append(helper.make_node("MatMulInteger", [tag + "_q", tag + "_w", tag + "_z"], [tag + "_i"]))
    nodes.append(helper.make_node("Cast", [tag + "_i"], [tag + "_f"], to=TensorProto.FLOAT))
    nodes.append(helper.make_node("Mul", [tag + "_f", tag + "_s"], [tag]))
    return tag


def total(tensors, tag):
    """A scalar depending on every tensor, so none is pruned as dead."""
    sums = []
    for t in tensors:
        nodes.append(helper.make_node("ReduceSum", [t], [t + "_sum"], keepdims=0))
        sums.append(t + "_sum")
    nodes.append(helper.make_node("Sum", sums, [tag]))
    return tag


h = "x"
for l in range(12):
    p = "l%d_" % l
    side = [
        qmatmul(h, 768, 2304, p + "qkv"),
        qmatmul(h, 768, 768, p + "attn_out"),
        qmatmul(h, 768, 768, p + "cross_q"),
        qmatmul("enc", 768, 1536, p + "cross_kv"),
    ]
    cross = qmatmul(h, 768, 768, p + "cross_out")
    mlp = qmatmul(qmatmul(h, 768, 3072, p + "mlp_up"), 3072, 768, p + "mlp_down")
    nodes.append(helper.make_node("Add", [mlp, cross], [p + "sum"]))
    nodes.append(helper.make_node("Add", [p + "sum", total(side, p + "side")], [p + "out"]))
    h = p + "out"
nodes.append(helper.make_node("Identity", [qmatmul(h, 768, 50257, "lm_head")], ["logits"]))

graph = helper.make_graph(
    nodes,
    "vit_gpt2_decoder_step_proxy",
    [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 768]),
        helper.make_tensor_value_info("enc", TensorProto.FLOAT, ["batch_x_197", 768]),
    ],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 50257])],
    initializer=inits,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
