#!/usr/bin/python3
"""Write a stand-in for part of one SD 2.x / SD-Turbo UNet step, for
bench/diffusion_test.go's BenchmarkDiffusionUNetProxy:

    /usr/bin/python3 models/diffusion/testdata/unet_proxy.py /tmp/unet_proxy.onnx

The real UNet cannot be fetched on this project's machines. The proxy is its
first down block at 512x512 (64x64 latents, 320 channels), built from the
architecture of diffusers' UNet2DConditionModel for SD 2.x: two ResNet
blocks (GroupNorm, SiLU, 3x3 convolutions, the time embedding's projection)
each followed by a Transformer2DModel with linear projections (GroupNorm,
proj_in, LayerNorm + self-attention over the 4096 positions in 5 heads of
64, LayerNorm + cross-attention to 77x1024 text states, LayerNorm + GEGLU
feed-forward 320 -> 2x1280 -> 320, proj_out). Weights are random, one set
per layer (~20 MB), fp32. Opset 17 has no GroupNormalization, so group norm
is InstanceNormalization over 32 groups, as torch exports it there.

It also prints the proxy's multiply-adds and those of the whole UNet at
512x512, counted layer by layer from the same architecture (convolutions,
linear layers and attention products; norms and activations left out), so
that a measured proxy time can be scaled to an estimate of a full step.
"""

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

C, H, W, CTX, CTX_DIM, HEAD = 320, 64, 64, 77, 1024, 64
N = H * W
rng = np.random.RandomState(0)
nodes, inits = [], []
count = [0]


def name(hint):
    count[0] += 1
    return "%s_%d" % (hint, count[0])


def const(arr, hint="w"):
    n = name(hint)
    inits.append(numpy_helper.from_array(np.asarray(arr, np.float32) if np.asarray(arr).dtype.kind == "f" else np.asarray(arr), n))
    return n


def op(t, inputs, **attrs):
    out = name(t.lower())
    nodes.append(helper.make_node(t, inputs, [out], name=name("n"), **attrs))
    return out


def weight(*shape):
    return const((rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]) if len(shape) > 1 else 1)).astype(np.float32))


def silu(x):
    return op("Mul", [x, op("Sigmoid", [x])])


def group_norm(x):  # x [1,C,H,W]
    g = op("Reshape", [x, const(np.array([1, 32, -1], np.int64), "shape")])
    g = op("InstanceNormalization", [g, const(np.ones(32, np.float32)), const(np.zeros(32, np.float32))], epsilon=1e-5)
    g = op("Reshape", [g, const(np.array([1, C, H, W], np.int64), "shape")])
    return op("Add", [op("Mul", [g, const(np.ones((C, 1, 1), np.float32))]), const(np.zeros((C, 1, 1), np.float32))])


def conv3(x):
    return op("Conv", [x, weight(C, C, 3, 3), const(np.zeros(C, np.float32))], pads=[1, 1, 1, 1])


def resnet(x, temb):
    h = conv3(silu(group_norm(x)))
    h = op("Add", [h, op("Reshape", [op("MatMul", [silu(temb), weight(1280, C)]), const(np.array([1, C, 1, 1], np.int64), "shape")])])
    h = conv3(silu(group_norm(h)))
    return op("Add", [x, h])


def linear(x, cin, cout):
    return op("Add", [op("MatMul", [x, weight(cin, cout)]), const(np.zeros(cout, np.float32))])


def layer_norm(x):
    return op("LayerNormalization", [x, const(np.ones(C, np.float32)), const(np.zeros(C, np.float32))], axis=-1)


def heads(x, n):  # [n, C] -> [5, n, 64]
    return op("Transpose", [op("Reshape", [x, const(np.array([n, C // HEAD, HEAD], np.int64), "shape")])], perm=[1, 0, 2])


def attention(q_in, kv_in, kv_n, kv_dim):
    q = heads(linear(q_in, C, C), N)
    k = heads(linear(kv_in, kv_dim, C), kv_n)
    v = heads(linear(kv_in, kv_dim, C), kv_n)
    s = op("Mul", [op("MatMul", [q, op("Transpose", [k], perm=[0, 2, 1])]), const(np.float32(HEAD ** -0.5))])
    a = op("MatMul", [op("Softmax", [s], axis=-1), v])  # [5, N, 64]
    a = op("Reshape", [op("Transpose", [a], perm=[1, 0, 2]), const(np.array([N, C], np.int64), "shape")])
    return linear(a, C, C)


def gelu(x):
    return op("Mul", [op("Mul", [x, const(np.float32(0.5))]),
                      op("Add", [op("Erf", [op("Mul", [x, const(np.float32(2 ** -0.5))])]), const(np.float32(1.0))])])


def transformer(x, text):
    tokens = op("Transpose", [op("Reshape", [group_norm(x), const(np.array([C, N], np.int64), "shape")])], perm=[1, 0])
    h = linear(tokens, C, C)  # proj_in
    h = op("Add", [h, attention(layer_norm(h), layer_norm(h), N, C)])
    h = op("Add", [h, attention(layer_norm(h), text, CTX, CTX_DIM)])
    ff = linear(layer_norm(h), C, 8 * C)
    a = op("Slice", [ff, const(np.array([0], np.int64)), const(np.array([4 * C], np.int64)), const(np.array([1], np.int64))])
    g = op("Slice", [ff, const(np.array([4 * C], np.int64)), const(np.array([8 * C], np.int64)), const(np.array([1], np.int64))])
    h = op("Add", [h, linear(op("Mul", [a, gelu(g)]), 4 * C, C)])
    h = linear(h, C, C)  # proj_out
    h = op("Reshape", [op("Transpose", [h], perm=[1, 0]), const(np.array([1, C, H, W], np.int64), "shape")])
    return op("Add", [x, h])


def build():
    x, text = "sample", "text"
    temb = const(rng.standard_normal((1, 1280)).astype(np.float32), "temb")
    ctx = op("Reshape", [text, const(np.array([CTX, CTX_DIM], np.int64), "shape")])
    for _ in range(2):
        x = transformer(resnet(x, temb), ctx)
    nodes.append(helper.make_node("Identity", [x], ["out"], name="out"))
    g = helper.make_graph(nodes, "unet_proxy",
                          [helper.make_tensor_value_info("sample", TensorProto.FLOAT, [1, C, H, W]),
                           helper.make_tensor_value_info("text", TensorProto.FLOAT, [1, CTX, CTX_DIM])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, C, H, W])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="imgserve-unet-proxy")
    m.ir_version = 8
    return m


# Multiply-adds, layer by layer.
def res_macs(hw, cin, cout):
    return hw * 9 * (cin * cout + cout * cout) + (hw * cin * cout if cin != cout else 0) + 1280 * cout


def tx_macs(hw, c):
    # proj_in/out 2, self q,k,v,o 4, cross q,o 2, FF 8 + 4: 20 N c^2; two
    # attention products over N^2 (self) and N x 77 (cross); cross k,v.
    return 20 * hw * c * c + 2 * hw * hw * c + 2 * hw * CTX * c + 2 * CTX * CTX_DIM * c


def unet_macs():
    s = [64 * 64, 32 * 32, 16 * 16, 8 * 8]
    m = s[0] * 9 * 4 * 320  # conv_in
    # down blocks
    m += res_macs(s[0], 320, 320) * 2 + tx_macs(s[0], 320) * 2 + s[1] * 9 * 320 * 320
    m += res_macs(s[1], 320, 640) + res_macs(s[1], 640, 640) + tx_macs(s[1], 640) * 2 + s[2] * 9 * 640 * 640
    m += res_macs(s[2], 640, 1280) + res_macs(s[2], 1280, 1280) + tx_macs(s[2], 1280) * 2 + s[3] * 9 * 1280 * 1280
    m += res_macs(s[3], 1280, 1280) * 2
    # mid
    m += res_macs(s[3], 1280, 1280) * 2 + tx_macs(s[3], 1280)
    # up blocks (skip connections concatenated)
    m += sum(res_macs(s[3], cin, 1280) for cin in (2560, 2560, 2560)) + s[2] * 9 * 1280 * 1280
    m += sum(res_macs(s[2], cin, 1280) for cin in (2560, 2560, 1920)) + tx_macs(s[2], 1280) * 3 + s[1] * 9 * 1280 * 1280
    m += sum(res_macs(s[1], cin, 640) for cin in (1920, 1280, 960)) + tx_macs(s[1], 640) * 3 + s[0] * 9 * 640 * 640
    m += sum(res_macs(s[0], cin, 320) for cin in (960, 640, 640)) + tx_macs(s[0], 320) * 3
    m += s[0] * 9 * 320 * 4  # conv_out
    return m


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/unet_proxy.onnx"
    m = build()
    onnx.checker.check_model(m)
    onnx.save(m, out)
    proxy = 2 * res_macs(N, C, C) + 2 * tx_macs(N, C)
    full = unet_macs()
    print("wrote %s" % out)
    print("proxy: %.1f G multiply-adds; whole UNet at 512x512: %.1f G (the proxy is %.0f%%)"
          % (proxy / 1e9, full / 1e9, 100.0 * proxy / full))


if __name__ == "__main__":
    main()
