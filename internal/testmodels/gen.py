#!/usr/bin/python3
"""Generate the small synthetic ONNX models used by imgserve's Go tests.

Run with Debian's python (it has onnx 1.12 and numpy):

    /usr/bin/python3 internal/testmodels/gen.py          # (re)write the *.onnx files
    /usr/bin/python3 internal/testmodels/gen.py --check  # verify committed files are up to date

The output is deterministic (fixed seeds, no timestamps): running the script
twice produces byte-identical files. Every model is validated with
onnx.checker (full check), onnx shape inference (declared output types must
match the inferred ones), and executed with a small numpy interpreter of the
ops used here; the results are compared against independent numpy reference
implementations of the documented semantics (see README.md). The Go test
(testmodels_test.go) runs the same models with the real ONNX Runtime.
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
PRODUCER = "imgserve-testmodels-gen"
HERE = os.path.dirname(os.path.abspath(__file__))

F32 = TensorProto.FLOAT
F16 = TensorProto.FLOAT16
I64 = TensorProto.INT64
I32 = TensorProto.INT32
U8 = TensorProto.UINT8
BOOL = TensorProto.BOOL

# Caption decoder constants (documented in README.md).
VOCAB = 50257
EOS = 50256
TOKEN_BASE = 256
TOKEN_RANGE = 2000
IMG_MOD = 97
TOP_LOGIT = 10.0
SECOND_LOGIT = 5.0
LAYER_OFFSET = 100000.0


# --------------------------------------------------------------------------
# Graph building helpers
# --------------------------------------------------------------------------


class Graph:
    """Accumulates nodes/initializers with deterministic auto-generated names."""

    def __init__(self, name):
        self.name = name
        self.nodes = []
        self.inits = []
        self.inputs = []
        self.outputs = []
        self._n = 0

    def _fresh(self, hint):
        self._n += 1
        return "%s_%d" % (hint, self._n)

    def input(self, name, elem, shape):
        self.inputs.append(helper.make_tensor_value_info(name, elem, shape))
        return name

    def output(self, name, elem, shape):
        self.outputs.append(helper.make_tensor_value_info(name, elem, shape))
        return name

    def const(self, value, dtype, hint="c"):
        arr = np.asarray(value, dtype=dtype)
        name = self._fresh(hint)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def f32(self, value, hint="c"):
        return self.const(value, np.float32, hint)

    def i64(self, value, hint="c"):
        return self.const(value, np.int64, hint)

    def op(self, op_type, inputs, out=None, n_out=1, **attrs):
        if out is None:
            outs = [self._fresh(op_type.lower()) for _ in range(n_out)]
        elif isinstance(out, str):
            outs = [out]
        else:
            outs = list(out)
        self.nodes.append(
            helper.make_node(op_type, list(inputs), outs, name=self._fresh("n_" + op_type), **attrs)
        )
        return outs[0] if len(outs) == 1 else outs

    def model(self, doc):
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.inits)
        m = helper.make_model(
            graph,
            producer_name=PRODUCER,
            producer_version="1",
            opset_imports=[helper.make_opsetid("", OPSET)],
        )
        m.ir_version = IR_VERSION
        m.doc_string = doc
        return m


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


def build_affine(name, batch, slow=False):
    g = Graph(name.replace(".onnx", ""))
    x = g.input("x", F32, [batch, 4])
    y0 = g.op("Add", [g.op("Mul", [x, g.f32(2.0)]), g.f32(1.0)])
    s0 = g.op("ReduceSum", [x, g.i64([1])], keepdims=1)
    if slow:
        # Burn a few ms per row: x -> [B,128] -> [B,512,128], then SLOW_STEPS
        # x (MatMul with ONE shared 128x128 weight + Tanh). The result is
        # multiplied by 0 and added to the outputs, so they stay exactly
        # x*2+1 and ReduceSum(x) (tanh keeps everything finite, 0*finite = 0).
        rng = np.random.RandomState(5)
        w = (rng.standard_normal((128, 128)) / np.sqrt(128.0)).astype(np.float32)
        wn = g.f32(w, "w")
        h = g.op("Tile", [x, g.i64([1, 32])])  # [B,128]
        h = g.op("Unsqueeze", [h, g.i64([1])])  # [B,1,128]
        h = g.op("Tile", [h, g.i64([1, 512, 1])])  # [B,512,128]
        for _ in range(SLOW_STEPS):
            h = g.op("Tanh", [g.op("MatMul", [h, wn])])
        r = g.op("ReduceSum", [h, g.i64([1, 2])], keepdims=0)  # [B]
        z = g.op("Mul", [g.op("Unsqueeze", [r, g.i64([1])]), g.f32(0.0)])  # [B,1]
        g.op("Add", [y0, z], out="y")
        g.op("Add", [s0, z], out="sum")
    else:
        g.op("Identity", [y0], out="y")
        g.op("Identity", [s0], out="sum")
    g.output("y", F32, [batch, 4])
    g.output("sum", F32, [batch, 1])
    doc = "y = x*2+1; sum = ReduceSum(x, axis=1, keepdims)"
    if slow:
        doc += "; plus %d dead [512,128]x[128,128] MatMul+Tanh steps per row" % SLOW_STEPS
    return g.model(doc)


SLOW_STEPS = 32


def build_affine_dyn():
    # Dynamic width as well as batch, so the scheduler's same-shape buckets
    # can be tested: rows of different widths must never share a batch.
    g = Graph("affine_dyn")
    x = g.input("x", F32, ["batch", "width"])
    g.op("Add", [g.op("Mul", [x, g.f32(2.0)]), g.f32(1.0)], out="y")
    g.output("y", F32, ["batch", "width"])
    return g.model("y = x*2+1 over [batch, width]")


def build_dtypes():
    g = Graph("dtypes")
    b = ["batch", 3]
    g.input("f32", F32, b)
    g.input("f16", F16, b)
    g.input("i64", I64, b)
    g.input("i32", I32, b)
    g.input("u8", U8, b)
    g.input("b", BOOL, b)
    g.op("Add", ["f32", g.f32(1.0)], out="f32_out")
    g.op("Mul", ["f16", g.const(2.0, np.float16)], out="f16_out")
    g.op("Add", ["i64", g.i64(7)], out="i64_out")
    g.op("Sub", ["i32", g.const(3, np.int32)], out="i32_out")
    g.op("Add", ["u8", g.const(1, np.uint8)], out="u8_out")
    g.op("Not", ["b"], out="b_out")
    g.output("f32_out", F32, b)
    g.output("f16_out", F16, b)
    g.output("i64_out", I64, b)
    g.output("i32_out", I32, b)
    g.output("u8_out", U8, b)
    g.output("b_out", BOOL, b)
    return g.model("f32+1, f16*2, i64+7, i32-3, u8+1 (wraps), Not(b)")


# Files written beside the models (external data), by name.
SIDE_FILES = {}
EXTERNAL_WEIGHTS = "external_affine.weights"


def build_external_affine():
    # Weights kept as ONNX external data in a file beside the model, as
    # exports over 2 GB must keep theirs.
    g = Graph("external_affine")
    x = g.input("x", F32, ["batch", 4])
    w = g.f32([1.0, 2.0, 3.0, 4.0], "w")
    g.op("Add", [g.op("Mul", [x, w]), g.f32(1.0)], out="y")
    g.output("y", F32, ["batch", 4])
    m = g.model("y = x*w + 1, w = [1,2,3,4] stored as external data in " + EXTERNAL_WEIGHTS)
    for t in m.graph.initializer:
        if t.name == w:
            data = t.raw_data
            t.ClearField("raw_data")
            t.data_location = onnx.TensorProto.EXTERNAL
            for k, v in (("location", EXTERNAL_WEIGHTS), ("offset", "0"), ("length", str(len(data)))):
                e = t.external_data.add()
                e.key, e.value = k, v
            SIDE_FILES[EXTERNAL_WEIGHTS] = data
    return m


def inlined(model):
    """A copy of model with its external data (SIDE_FILES) inside, for the checker."""
    if not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        return model
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in m.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            t.raw_data = SIDE_FILES[{e.key: e.value for e in t.external_data}["location"]]
            t.ClearField("external_data")
            t.data_location = onnx.TensorProto.DEFAULT
    return m


def build_fixed1_reshape():
    g = Graph("fixed1_reshape")
    x = g.input("x", F32, [1, 4])
    r = g.op("Reshape", [x, g.i64([1, 2, 2], "shape_1x2x2")])
    t = g.op("Transpose", [r], perm=[0, 2, 1])
    a = g.op("Add", [t, g.f32(1.0)])
    g.op("Reshape", [a, g.i64([1, 4], "shape_1x4")], out="y")
    g.output("y", F32, [1, 4])
    return g.model("y = [x0, x2, x1, x3] + 1 via constant Reshapes [1,2,2] / [1,4]")


def build_resize_sizes(name, fixed):
    # Bilinear Resize sized at run time from Shape(x), as PyTorch exports
    # F.interpolate(size=..., mode="bilinear"): up is exactly twice x's
    # height and three times its width, up_odd one pixel more (no integer
    # scale).
    g = Graph(name.replace(".onnx", ""))
    shape = [1, 16, 4, 6] if fixed else ["batch", 16, "height", "width"]
    x = g.input("x", F32, shape)
    s = g.op("Shape", [x])
    attrs = dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel")
    g.op("Resize", [x, "", "", g.op("Mul", [s, g.i64([1, 1, 2, 3])])], out="up", **attrs)
    g.op("Resize", [x, "", "", g.op("Add", [s, g.i64([0, 0, 1, 1])])], out="up_odd", **attrs)
    g.output("up", F32, [1, 16, 8, 18] if fixed else ["batch", 16, "h2", "w3"])
    g.output("up_odd", F32, [1, 16, 5, 7] if fixed else ["batch", 16, "h1", "w1"])
    return g.model("up = bilinear resize of x to 2x its height, 3x its width; up_odd to one pixel more; sizes from Shape(x)")


def build_lama(name, batch, scale255):
    g = Graph(name.replace(".onnx", ""))
    image = g.input("image", F32, [batch, 3, 512, 512])
    mask = g.input("mask", F32, [batch, 1, 512, 512])
    one = g.f32(1.0)
    keep = g.op("Mul", [image, g.op("Sub", [one, mask])])
    fill = g.op("Mul", [g.op("Sub", [one, image]), mask])
    comp = g.op("Add", [keep, fill])
    if scale255:
        g.op("Mul", [comp, g.f32(255.0)], out="output")
    else:
        g.op("Identity", [comp], out="output")
    g.output("output", F32, [batch, 3, 512, 512])
    scale = "255 * " if scale255 else ""
    return g.model("output = %s(image*(1-mask) + (1-image)*mask)" % scale)


def _pooled_grid(g, pixel_values):
    """pixel_values [B,3,224,224] -> [B,48] (4x4 average grid, c*16+i*4+j)."""
    pool = g.op("AveragePool", [pixel_values], kernel_shape=[56, 56], strides=[56, 56])
    return g.op("Flatten", [pool], axis=1)


def clip_vision_weights():
    rng = np.random.RandomState(1)
    w = (rng.standard_normal((52, 512)) / np.sqrt(52.0)).astype(np.float32)
    return w


def build_clip_vision():
    g = Graph("clip_vision_synth")
    pv = g.input("pixel_values", F32, ["batch", 3, 224, 224])
    grid = _pooled_grid(g, pv)  # [B,48]
    centered = g.op("Sub", [grid, g.op("ReduceMean", [grid], axes=[1], keepdims=1)])
    means = g.op("ReduceMean", [pv], axes=[2, 3], keepdims=0)  # [B,3]
    ones = g.op("Add", [g.op("Mul", [g.op("ReduceSum", [means, g.i64([1])], keepdims=1), g.f32(0.0)]), g.f32(1.0)])
    feats = g.op("Concat", [centered, means, ones], axis=1)  # [B,52]
    g.op("MatMul", [feats, g.f32(clip_vision_weights(), "proj")], out="image_embeds")
    padded = g.op("Pad", [grid, g.i64([0, 0, 0, 768 - 48])])  # [B,768]
    g.op(
        "Expand",
        [g.op("Unsqueeze", [padded, g.i64([1])]), g.i64([1, 50, 768])],
        out="last_hidden_state",
    )
    g.output("image_embeds", F32, ["batch", 512])
    g.output("last_hidden_state", F32, ["batch", 50, 768])
    return g.model("image_embeds = [grid48 - mean(grid48), channel means, 1] @ W[52,512]")


def clip_text_weights():
    rng = np.random.RandomState(2)
    table = rng.standard_normal((1021, 16)).astype(np.float32)
    proj = (rng.standard_normal((16, 512)) / 4.0).astype(np.float32)
    return table, proj


def build_clip_text(with_mask):
    name = "clip_text_synth" if with_mask else "clip_text_synth_noattn"
    g = Graph(name)
    seq = ["batch", "sequence"]
    ids = g.input("input_ids", I64, seq)
    if with_mask:
        g.input("attention_mask", I64, seq)
    table, proj = clip_text_weights()
    idm = g.op("Mod", [ids, g.i64(1021)], fmod=0)
    emb = g.op("Gather", [g.f32(table, "table"), idm], axis=0)  # [B,T,16]
    hidden = g.op("MatMul", [emb, g.f32(proj, "proj")], out="last_hidden_state")  # [B,T,512]
    if with_mask:
        m = g.op("Unsqueeze", [g.op("Cast", ["attention_mask"], to=F32), g.i64([2])])
        hidden = g.op("Mul", [hidden, m])
    g.op("ReduceSum", [hidden, g.i64([1])], keepdims=0, out="text_embeds")
    g.output("text_embeds", F32, ["batch", 512])
    g.output("last_hidden_state", F32, ["batch", "sequence", 512])
    return g.model("bag of tokens: text_embeds = sum_t mask[t] * (table[ids[t] mod 1021] @ proj)")


def build_caption_encoder():
    g = Graph("caption_encoder_synth")
    pv = g.input("pixel_values", F32, ["batch", 3, 224, 224])
    means = g.op("ReduceMean", [pv], axes=[2, 3], keepdims=0)  # [B,3]
    stat = g.op("MatMul", [means, g.f32([[0.5], [0.3], [0.2]], "luma")])  # [B,1]
    grid = _pooled_grid(g, pv)  # [B,48]
    feats = g.op("Concat", [stat, means, grid], axis=1)  # [B,52]
    padded = g.op("Pad", [feats, g.i64([0, 0, 0, 768 - 52])])  # [B,768]
    g.op(
        "Expand",
        [g.op("Unsqueeze", [padded, g.i64([1])]), g.i64([1, 197, 768])],
        out="last_hidden_state",
    )
    g.output("last_hidden_state", F32, ["batch", 197, 768])
    return g.model("every position = [0.5m0+0.3m1+0.2m2, m0, m1, m2, grid48, 0...]")


def build_caption_decoder(name, layers, heads, head_size):
    g = Graph(name.replace(".onnx", ""))
    ids = g.input("input_ids", I64, ["batch", "sequence_length"])
    ehs = g.input("encoder_hidden_states", F32, ["batch", "encoder_sequence_length", 768])
    past_shape = ["batch", heads, "past_sequence_length", head_size]
    for i in range(layers):
        g.input("past_key_values.%d.key" % i, F32, past_shape)
        g.input("past_key_values.%d.value" % i, F32, past_shape)
    g.input("use_cache_branch", BOOL, [1])

    # P_eff = past_sequence_length if use_cache_branch else 0
    p = g.op("Gather", [g.op("Shape", ["past_key_values.0.key"]), g.i64(2)], axis=0)  # scalar
    peff1 = g.op("Mul", [p, g.op("Cast", ["use_cache_branch"], to=I64)])  # [1]
    peff = g.op("Squeeze", [peff1, g.i64([0])])  # scalar
    t = g.op("Gather", [g.op("Shape", [ids]), g.i64(1)], axis=0)  # scalar
    pos = g.op("Range", [peff, g.op("Add", [peff, t]), g.i64(1)])  # [T]

    # img = floor(1000 * ehs[:,0,0] + 0.5) mod 97, as [B,1]
    e00 = g.op("Gather", [g.op("Gather", [ehs, g.i64(0)], axis=1), g.i64(0)], axis=1)  # [B]
    img = g.op("Add", [g.op("Mul", [e00, g.f32(1000.0)]), g.f32(0.5)])
    img = g.op("Cast", [g.op("Floor", [img])], to=I64)
    img = g.op("Unsqueeze", [g.op("Mod", [img, g.i64(IMG_MOD)], fmod=0), g.i64([1])])  # [B,1]
    length = g.op("Add", [g.op("Mod", [img, g.i64(5)], fmod=0), g.i64(3)])  # [B,1]

    a = g.op("Add", [g.op("Mul", [img, g.i64(31)]), g.op("Mul", [pos, g.i64(7)])])  # [B,T]
    a = g.op("Add", [a, ids])
    nxt = g.op("Add", [g.op("Mod", [a, g.i64(TOKEN_RANGE)], fmod=0), g.i64(TOKEN_BASE)])
    stop = g.op("GreaterOrEqual", [pos, length])  # [B,T]
    top = g.op("Where", [stop, g.i64(EOS), nxt])
    second = g.op("Where", [stop, nxt, g.op("Add", [nxt, g.i64(1)])])
    vocab = g.op("Range", [g.i64(0), g.i64(VOCAB), g.i64(1)])  # [V]
    l1 = g.op("Equal", [vocab, g.op("Unsqueeze", [top, g.i64([2])])])
    l1 = g.op("Mul", [g.op("Cast", [l1], to=F32), g.f32(TOP_LOGIT)])
    l2 = g.op("Equal", [vocab, g.op("Unsqueeze", [second, g.i64([2])])])
    l2 = g.op("Mul", [g.op("Cast", [l2], to=F32), g.f32(SECOND_LOGIT)])
    g.op("Add", [l1, l2], out="logits")
    g.output("logits", F32, ["batch", "sequence_length", VOCAB])

    # New cache entries: key = float(input_ids[b,t]) + 1e5*layer,
    # value = float(pos(t)) + 1e5*layer, broadcast over heads and head_size.
    kbase = g.op("Unsqueeze", [g.op("Cast", [ids], to=F32), g.i64([1, 3])])  # [B,1,T,1]
    posf = g.op("Unsqueeze", [g.op("Cast", [pos], to=F32), g.i64([0, 1, 3])])  # [1,1,T,1]
    vbase = g.op("Expand", [posf, g.op("Shape", [kbase])])  # [B,1,T,1]
    bshape = g.i64([1, heads, 1, head_size], "head_shape")
    present_shape = ["batch", heads, "present_sequence_length", head_size]
    for i in range(layers):
        off = g.f32(LAYER_OFFSET * i, "layer_off")
        for kind, base in (("key", kbase), ("value", vbase)):
            new = g.op("Expand", [g.op("Add", [base, off]), bshape])  # [B,H,T,D]
            past = g.op(
                "Slice",
                ["past_key_values.%d.%s" % (i, kind), g.i64([0]), peff1, g.i64([2])],
            )
            out = "present.%d.%s" % (i, kind)
            g.op("Concat", [past, new], axis=2, out=out)
            g.output(out, F32, present_shape)
    return g.model(
        "synthetic merged GPT-2 decoder: %d layers, %d heads, head size %d; see README.md"
        % (layers, heads, head_size)
    )


# --------------------------------------------------------------------------
# rembg's model set (background removal): tiny graphs with each export's
# signature. See README.md for the semantics.
# --------------------------------------------------------------------------


def _channel(g, x, c):
    """x[:, c:c+1] of an NCHW tensor."""
    return g.op("Slice", [x, g.i64([c]), g.i64([c + 1]), g.i64([1])])


def build_salient(name, inp, out, logits, size=1024):
    """d = 3 * (R - B) of the normalised input, as logits (BiRefNet, which
    rembg passes through a sigmoid) or already through a sigmoid (the others)."""
    g = Graph(name.replace(".onnx", ""))
    x = g.input(inp, F32, [1, 3, size, size])
    d = g.op("Mul", [g.op("Sub", [_channel(g, x, 0), _channel(g, x, 2)]), g.f32(3.0)])
    if logits:
        g.op("Identity", [d], out=out)
    else:
        g.op("Sigmoid", [d], out=out)
    g.output(out, F32, [1, 1, size, size])
    return g.model("%s = %s3 * (x[:,0] - x[:,2])" % (out, "" if logits else "sigmoid of "))


CLOTH_W = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
CLOTH_B = [0.5, 0.0, 0.0, 0.0]


def build_cloth():
    """Class logits [background 0.5, R, G, B] of the normalised input, as a
    1x1 convolution; seven outputs like U^2-Net's side outputs (d0 first)."""
    g = Graph("u2net_cloth_seg_synth")
    x = g.input("input.1", F32, [1, 3, 768, 768])
    w = g.f32(np.array(CLOTH_W, np.float32).reshape(4, 3, 1, 1), "w")
    b = g.f32(np.array(CLOTH_B, np.float32), "b")
    d0 = g.op("Conv", [x, w, b], out="d0")
    g.output("d0", F32, [1, 4, 768, 768])
    for i in range(1, 7):
        g.op("Mul", [d0, g.f32(1.0 / (i + 1))], out="d%d" % i)
        g.output("d%d" % i, F32, [1, 4, 768, 768])
    return g.model("d0 = conv1x1(input.1) with classes [0.5, R, G, B]; d_i = d0 / (i+1)")


SAM_RADIUS = 40.0
NEG = -1e9


def build_sam_encoder():
    """image_embeddings[0, c, :, :] = mean of input channel c % 3, / 255."""
    g = Graph("sam_encoder_synth")
    x = g.input("input_image", F32, ["image_height", "image_width", 3])
    m = g.op("ReduceMean", [x], axes=[0, 1], keepdims=0)  # [3]
    m = g.op("Mul", [m, g.f32(1.0 / 255.0)])
    t = g.op("Tile", [m, g.i64([86])])  # [258]
    t = g.op("Slice", [t, g.i64([0]), g.i64([256]), g.i64([0])])  # [256]
    t = g.op("Reshape", [t, g.i64([1, 256, 1, 1])])
    g.op("Expand", [t, g.i64([1, 256, 64, 64])], out="image_embeddings")
    g.output("image_embeddings", F32, [1, 256, 64, 64])
    return g.model("image_embeddings[0,c] = mean(input_image[:,:,c%3]) / 255, everywhere")


def build_sam_decoder():
    """A mask from the prompt alone, in orig_im_size pixels: a disc of
    radius 40 around each point labelled 1, the box of the points labelled
    2 and 3, minus discs around points labelled 0; everything times
    sign(max(image_embeddings)), so a black image gives an empty mask."""
    g = Graph("sam_decoder_synth")
    emb = g.input("image_embeddings", F32, [1, 256, 64, 64])
    coords = g.input("point_coords", F32, [1, "num_points", 2])
    labels = g.input("point_labels", F32, [1, "num_points"])
    g.input("mask_input", F32, [1, 1, 256, 256])
    g.input("has_mask_input", F32, [1])
    size = g.input("orig_im_size", F32, [2])
    h = g.op("Cast", [g.op("Gather", [size, g.i64(0)], axis=0)], to=I64)
    w = g.op("Cast", [g.op("Gather", [size, g.i64(1)], axis=0)], to=I64)
    ys = g.op("Reshape", [g.op("Cast", [g.op("Range", [g.i64(0), h, g.i64(1)])], to=F32), g.i64([1, -1, 1])])
    xs = g.op("Reshape", [g.op("Cast", [g.op("Range", [g.i64(0), w, g.i64(1)])], to=F32), g.i64([1, 1, -1])])
    pts = g.op("Squeeze", [coords, g.i64([0])])  # [N,2]
    px = g.op("Reshape", [g.op("Gather", [pts, g.i64(0)], axis=1), g.i64([-1, 1, 1])])
    py = g.op("Reshape", [g.op("Gather", [pts, g.i64(1)], axis=1), g.i64([-1, 1, 1])])
    lab = g.op("Reshape", [labels, g.i64([-1, 1, 1])])
    dx, dy = g.op("Sub", [xs, px]), g.op("Sub", [ys, py])
    d2 = g.op("Add", [g.op("Mul", [dx, dx]), g.op("Mul", [dy, dy])])  # [N,H,W]
    disc = g.op("Sub", [g.f32(SAM_RADIUS * SAM_RADIUS), d2])
    neg = g.f32(NEG)
    pos = g.op("ReduceMax", [g.op("Where", [g.op("Equal", [lab, g.f32(1.0)]), disc, neg])], axes=[0], keepdims=0)
    cut = g.op("ReduceMax", [g.op("Where", [g.op("Equal", [lab, g.f32(0.0)]), disc, neg])], axes=[0], keepdims=0)

    def corner(label):
        sel = g.op("Cast", [g.op("Equal", [lab, g.f32(label)])], to=F32)  # [N,1,1]
        cnt = g.op("ReduceSum", [sel, g.i64([0, 1, 2])], keepdims=0)
        div = g.op("Max", [cnt, g.f32(1.0)])
        cx = g.op("Div", [g.op("ReduceSum", [g.op("Mul", [px, sel]), g.i64([0, 1, 2])], keepdims=0), div])
        cy = g.op("Div", [g.op("ReduceSum", [g.op("Mul", [py, sel]), g.i64([0, 1, 2])], keepdims=0), div])
        return cx, cy, cnt

    x0, y0, n0 = corner(2.0)
    x1, y1, _ = corner(3.0)
    xs2 = g.op("Squeeze", [xs, g.i64([0])])  # [1,W]
    ys2 = g.op("Squeeze", [ys, g.i64([0])])  # [H,1]
    inside = g.op("Min", [g.op("Sub", [xs2, x0]), g.op("Sub", [x1, xs2]), g.op("Sub", [ys2, y0]), g.op("Sub", [y1, ys2])])
    box = g.op("Where", [g.op("Greater", [n0, g.f32(0.0)]), inside, neg])
    logit = g.op("Max", [pos, box])  # [H,W]
    logit = g.op("Where", [g.op("Greater", [cut, g.f32(0.0)]), g.f32(-1.0), logit])
    gate = g.op("Sign", [g.op("ReduceMax", [emb], keepdims=0)])
    logit = g.op("Mul", [logit, gate])
    g.op("Unsqueeze", [logit, g.i64([0, 1])], out="masks")
    g.op("Mul", [g.op("ReduceMax", [emb], axes=[1, 2, 3], keepdims=0), g.f32([[0.0]])], out="iou_predictions")
    g.op("Mul", ["mask_input", g.f32(0.0)], out="low_res_masks")
    g.output("masks", F32, [1, 1, "height", "width"])
    g.output("iou_predictions", F32, [1, 1])
    g.output("low_res_masks", F32, [1, 1, 256, 256])
    return g.model("synthetic SAM decoder: discs (r=40) at label-1 points, the 2/3 box, minus label-0 discs; see README.md")
# Stable Diffusion (signatures of the diffusers/optimum ONNX layout; see README.md)
# --------------------------------------------------------------------------

# CLIP BPE ids of the colour words the synthetic text encoder reacts to.
SD_RED, SD_GREEN, SD_BLUE = 736, 1901, 1746
SD_HIDDEN = 1024  # SD 2.x / SD-Turbo text width
SD_VAE_SCALE = 0.18215
SD_COLOUR_GAIN = 38.5  # one colour word among 77 positions adds 0.5 to the mean


def sd_training_sigmas():
    """sqrt((1-acp)/acp) of SD's scaled_linear betas (0.00085..0.012, 1000
    steps) as diffusers computes them on the CPU: float32 betas, cumulative
    product accumulated in float64 and stored as float32, float32 sqrt."""
    n = 1000
    s, e = np.float32(0.00085 ** 0.5), np.float32(0.012 ** 0.5)
    step = (e - s) / np.float32(n - 1)
    b = np.empty(n, np.float32)
    for i in range(n):
        b[i] = s + step * np.float32(i) if i < n // 2 else e - step * np.float32(n - 1 - i)
    betas = b * b
    acp = np.cumprod((np.float32(1) - betas).astype(np.float64)).astype(np.float32)
    return np.sqrt((np.float32(1) - acp) / acp).astype(np.float32)


def build_sd_text_encoder(name, ids_type, out_type):
    g = Graph(name.replace(".onnx", ""))
    seq = ["batch_size", "sequence_length"]
    ids = g.input("input_ids", ids_type, seq)
    if ids_type != I64:
        ids = g.op("Cast", [ids], to=I64)
    feats = []
    for tok in (SD_RED, SD_GREEN, SD_BLUE):
        hit = g.op("Cast", [g.op("Equal", [ids, g.i64(tok)])], to=F32)
        feats.append(g.op("Add", [g.op("Mul", [hit, g.f32(SD_COLOUR_GAIN)]), g.f32(-1.0)]))
    rest = g.op("Cast", [g.op("Mod", [ids, g.i64(17)], fmod=0)], to=F32)
    feats.append(g.op("Sub", [g.op("Mul", [rest, g.f32(1.0 / 34)]), g.f32(0.25)]))
    cols = [g.op("Unsqueeze", [f, g.i64([2])]) for f in feats]
    four = g.op("Concat", cols, axis=2)  # [B,T,4]
    hidden = g.op("Pad", [four, g.i64([0, 0, 0, 0, 0, SD_HIDDEN - 4])])
    pooled = g.op("Gather", [hidden, g.i64(-1)], axis=1)  # [B,1024]: the last position
    for src, out in ((hidden, "last_hidden_state"), (pooled, "pooler_output")):
        if out_type == F32:
            g.op("Identity", [src], out=out)
        else:
            g.op("Cast", [src], out=out, to=out_type)
    g.output("last_hidden_state", out_type, ["batch_size", "sequence_length", SD_HIDDEN])
    g.output("pooler_output", out_type, ["batch_size", SD_HIDDEN])
    return g.model("synthetic SD text encoder: per token [-1+38.5*(id==red), ...green, ...blue, (id%17)/34-0.25, 0...]")


def build_sd_unet(name, fp16):
    g = Graph(name.replace(".onnx", ""))
    ft = F16 if fp16 else F32
    sample = g.input("sample", ft, ["batch_size", 4, "height", "width"])
    if fp16:
        g.input("timestep", F32, [])  # optimum: "a scalar with no dimension"
        t = g.op("Reshape", [g.op("Cast", ["timestep"], to=I64), g.i64([1])])
    else:
        t = g.input("timestep", I64, [1])  # the ONNX Runtime web example's export
    ehs = g.input("encoder_hidden_states", ft, ["batch_size", "sequence_length", SD_HIDDEN])
    if fp16:
        sample = g.op("Cast", [sample], to=F32)
        ehs = g.op("Cast", [ehs], to=F32)
    t = g.op("Clip", [t, g.i64(0), g.i64(999)])
    sig = g.op("Gather", [g.f32(sd_training_sigmas(), "sigmas"), t], axis=0)  # [1]
    sig4 = g.op("Reshape", [sig, g.i64([1, 1, 1, 1])])
    scale = g.op("Sqrt", [g.op("Add", [g.op("Mul", [sig4, sig4]), g.f32(1.0)])])
    x = g.op("Mul", [sample, scale])  # the unscaled latents
    cond = g.op("Slice", [ehs, g.i64([0]), g.i64([4]), g.i64([2])])  # [B,T,4]
    c = g.op("ReduceMean", [cond], axes=[1], keepdims=0)  # [B,4]
    c4 = g.op("Unsqueeze", [c, g.i64([2, 3])])  # [B,4,1,1]
    target = g.op("Mul", [g.op("Add", [c4, g.op("Mul", [g.op("Tanh", [sample]), g.f32(0.5)])]), g.f32(SD_VAE_SCALE)])
    eps = g.op("Div", [g.op("Sub", [x, target]), sig4])
    if fp16:
        g.op("Cast", [eps], out="out_sample", to=F16)
    else:
        g.op("Identity", [eps], out="out_sample")
    g.output("out_sample", ft, ["batch_size", 4, "height", "width"])
    return g.model("synthetic SD UNet: eps such that the predicted x0 is 0.18215*(c + 0.5*tanh(sample))")


def build_sd_vae_decoder(name, fp16):
    g = Graph(name.replace(".onnx", ""))
    ft = F16 if fp16 else F32
    z = g.input("latent_sample", ft, ["batch_size", 4, "height_latent", "width_latent"])
    if fp16:
        z = g.op("Cast", [z], to=F32)
    rgb = g.op("Slice", [z, g.i64([0]), g.i64([3]), g.i64([1])])
    z3 = g.op("Slice", [z, g.i64([3]), g.i64([4]), g.i64([1])])
    img = g.op("Tanh", [g.op("Add", [rgb, g.op("Mul", [z3, g.f32(0.25)])])])
    up = g.op("Resize", [img, "", g.f32([1, 1, 8, 8], "scales")], mode="nearest",
              coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    if fp16:
        g.op("Cast", [up], out="sample", to=F16)
    else:
        g.op("Identity", [up], out="sample")
    g.output("sample", ft, ["batch_size", 3, "height", "width"])
    return g.model("synthetic SD VAE decoder: tanh(z[0:3] + 0.25*z[3]), nearest x8")


def build_sd_vae_encoder(name, fp16):
    g = Graph(name.replace(".onnx", ""))
    ft = F16 if fp16 else F32
    x = g.input("sample", ft, ["batch_size", 3, "height", "width"])
    if fp16:
        x = g.op("Cast", [x], to=F32)
    p = g.op("AveragePool", [x], kernel_shape=[8, 8], strides=[8, 8])
    m = g.op("Atanh", [g.op("Clip", [p, g.f32(-0.99), g.f32(0.99)])])
    zero = g.op("Mul", [g.op("Slice", [m, g.i64([0]), g.i64([1]), g.i64([1])]), g.f32(0.0)])
    mean = g.op("Concat", [m, zero], axis=1)  # [B,4,h,w]
    dims = ["batch_size", 4, "height_latent", "width_latent"]
    if fp16:
        # older exports: latent_sample, 4 channels, already sampled
        g.op("Cast", [mean], out="latent_sample", to=F16)
        g.output("latent_sample", ft, dims)
    else:
        # optimum: latent_parameters, mean and log-variance
        logvar = g.op("Add", [g.op("Mul", [mean, g.f32(0.0)]), g.f32(-30.0)])
        g.op("Concat", [mean, logvar], axis=1, out="latent_parameters")
        g.output("latent_parameters", ft, ["batch_size", 8, "height_latent", "width_latent"])
    return g.model("synthetic SD VAE encoder: atanh(clip(avgpool8(x), +-0.99)), 0 (mean); logvar -30")


def build_sd_safety_checker():
    g = Graph("sd_safety_checker_synth")
    clip = g.input("clip_input", F32, ["batch", "channels", "height", "width"])
    images = g.input("images", F32, ["batch", "height", "width", "channels"])
    corner = g.op("Slice", [images, g.i64([0, 0, 0]), g.i64([8, 8, 1]), g.i64([1, 2, 3])])
    red = g.op("ReduceMean", [corner], axes=[1, 2, 3], keepdims=0)  # [B]
    cm = g.op("ReduceMean", [clip], axes=[1, 2, 3], keepdims=0)  # [B], consumed, weight 0
    score = g.op("Add", [red, g.op("Mul", [cm, g.f32(0.0)])])
    flag = g.op("Greater", [score, g.f32(0.5)], out="has_nsfw_concepts")
    keep = g.op("Sub", [g.f32(1.0), g.op("Cast", [flag], to=F32)])
    g.op("Mul", [images, g.op("Reshape", [keep, g.i64([-1, 1, 1, 1])])], out="out_images")
    g.output("out_images", F32, ["batch", "height", "width", "channels"])
    g.output("has_nsfw_concepts", BOOL, ["batch"])
    return g.model("synthetic SD safety checker: flags an image whose top-left 8x8 red mean exceeds 0.5")


def all_models():
    return [
        ("affine_f32.onnx", build_affine("affine_f32.onnx", "batch")),
        ("affine_dyn.onnx", build_affine_dyn()),
        ("dtypes.onnx", build_dtypes()),
        ("fixed1_affine.onnx", build_affine("fixed1_affine.onnx", 1)),
        ("fixed1_reshape.onnx", build_fixed1_reshape()),
        ("external_affine.onnx", build_external_affine()),
        ("slow_affine.onnx", build_affine("slow_affine.onnx", "batch", slow=True)),
        ("resize_sizes.onnx", build_resize_sizes("resize_sizes.onnx", True)),
        ("resize_sizes_dyn.onnx", build_resize_sizes("resize_sizes_dyn.onnx", False)),
        ("lama_synth.onnx", build_lama("lama_synth.onnx", 1, True)),
        ("lama_synth_dyn.onnx", build_lama("lama_synth_dyn.onnx", "batch", True)),
        ("lama_synth_unit.onnx", build_lama("lama_synth_unit.onnx", 1, False)),
        ("clip_vision_synth.onnx", build_clip_vision()),
        ("clip_text_synth.onnx", build_clip_text(True)),
        ("clip_text_synth_noattn.onnx", build_clip_text(False)),
        ("caption_encoder_synth.onnx", build_caption_encoder()),
        ("caption_decoder_synth.onnx", build_caption_decoder("caption_decoder_synth.onnx", 12, 12, 64)),
        (
            "caption_decoder_synth_2layer.onnx",
            build_caption_decoder("caption_decoder_synth_2layer.onnx", 2, 4, 16),
        ),
        ("birefnet_synth.onnx", build_salient("birefnet_synth.onnx", "input_image", "output_image", True)),
        ("isnet_anime_synth.onnx", build_salient("isnet_anime_synth.onnx", "img", "mask", False)),
        ("bria_rmbg_synth.onnx", build_salient("bria_rmbg_synth.onnx", "pixel_values", "alphas", False)),
        ("ben2_synth.onnx", build_salient("ben2_synth.onnx", "input", "output", False)),
        ("u2net_cloth_seg_synth.onnx", build_cloth()),
        ("sam_encoder_synth.onnx", build_sam_encoder()),
        ("sam_decoder_synth.onnx", build_sam_decoder()),
        ("sd_text_encoder_synth.onnx", build_sd_text_encoder("sd_text_encoder_synth.onnx", I32, F32)),
        ("sd_text_encoder_synth_fp16.onnx", build_sd_text_encoder("sd_text_encoder_synth_fp16.onnx", I64, F16)),
        ("sd_unet_synth.onnx", build_sd_unet("sd_unet_synth.onnx", False)),
        ("sd_unet_synth_fp16.onnx", build_sd_unet("sd_unet_synth_fp16.onnx", True)),
        ("sd_vae_decoder_synth.onnx", build_sd_vae_decoder("sd_vae_decoder_synth.onnx", False)),
        ("sd_vae_decoder_synth_fp16.onnx", build_sd_vae_decoder("sd_vae_decoder_synth_fp16.onnx", True)),
        ("sd_vae_encoder_synth.onnx", build_sd_vae_encoder("sd_vae_encoder_synth.onnx", False)),
        ("sd_vae_encoder_synth_fp16.onnx", build_sd_vae_encoder("sd_vae_encoder_synth_fp16.onnx", True)),
        ("sd_safety_checker_synth.onnx", build_sd_safety_checker()),
    ]


# --------------------------------------------------------------------------
# Minimal numpy interpreter for the ops used above (self-check only)
# --------------------------------------------------------------------------

NP_TYPES = {F32: np.float32, F16: np.float16, I64: np.int64, I32: np.int32, U8: np.uint8, BOOL: np.bool_}


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _ax(v):
    return tuple(int(a) for a in np.asarray(v).reshape(-1))


def run_graph(model, feeds):
    env = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    env.update(feeds)
    for n in model.graph.node:
        a = _attrs(n)
        x = [env[i] if i else None for i in n.input]
        op = n.op_type
        if op == "Add":
            r = x[0] + x[1]
        elif op == "Sub":
            r = x[0] - x[1]
        elif op == "Mul":
            r = x[0] * x[1]
        elif op == "MatMul":
            r = np.matmul(x[0], x[1])
        elif op == "Identity":
            r = x[0]
        elif op == "Not":
            r = np.logical_not(x[0])
        elif op == "Tanh":
            r = np.tanh(x[0])
        elif op == "Sigmoid":
            r = (1 / (1 + np.exp(-x[0]))).astype(x[0].dtype)
        elif op == "Div":
            r = x[0] / x[1]
        elif op == "Sign":
            r = np.sign(x[0])
        elif op == "Greater":
            r = x[0] > x[1]
        elif op == "Max":
            r = x[0]
            for v in x[1:]:
                r = np.maximum(r, v)
        elif op == "Min":
            r = x[0]
            for v in x[1:]:
                r = np.minimum(r, v)
        elif op == "ReduceMax":
            axes = tuple(a["axes"]) if "axes" in a else None
            r = np.max(x[0], axis=axes, keepdims=bool(a.get("keepdims", 1)))
        elif op == "Conv":
            assert x[1].shape[2:] == (1, 1)
            r = np.einsum("bchw,oc->bohw", x[0], x[1][:, :, 0, 0]) + x[2][None, :, None, None]
        elif op == "Atanh":
            r = np.arctanh(x[0])
        elif op == "Sqrt":
            r = np.sqrt(x[0])
        elif op == "Clip":
            r = np.clip(x[0], x[1], x[2])
        elif op == "Resize":
            assert a["mode"] == b"nearest" and a["nearest_mode"] == b"floor"
            f = [int(v) for v in x[2]]
            r = x[0]
            for ax, k in enumerate(f):
                if k != 1:
                    r = np.repeat(r, k, axis=ax)
        elif op == "Floor":
            r = np.floor(x[0])
        elif op == "Equal":
            r = x[0] == x[1]
        elif op == "GreaterOrEqual":
            r = x[0] >= x[1]
        elif op == "Where":
            r = np.where(x[0], x[1], x[2])
        elif op == "Mod":
            assert a.get("fmod", 0) == 0
            r = np.mod(x[0], x[1])
        elif op == "Cast":
            r = x[0].astype(NP_TYPES[a["to"]])
        elif op == "ReduceSum":
            r = np.sum(x[0], axis=_ax(x[1]), keepdims=bool(a.get("keepdims", 1)))
        elif op == "ReduceMean":
            r = np.mean(x[0], axis=tuple(a["axes"]), keepdims=bool(a.get("keepdims", 1))).astype(x[0].dtype)
        elif op == "Reshape":
            r = x[0].reshape(_ax(x[1]))
        elif op == "Transpose":
            r = np.transpose(x[0], a["perm"])
        elif op == "Flatten":
            r = x[0].reshape(x[0].shape[0], -1)
        elif op == "Unsqueeze":
            r = x[0]
            for ax in sorted(_ax(x[1])):
                r = np.expand_dims(r, ax)
        elif op == "Squeeze":
            r = np.squeeze(x[0], axis=_ax(x[1]))
        elif op == "Expand":
            shape = np.broadcast_shapes(x[0].shape, _ax(x[1]))
            r = np.broadcast_to(x[0], shape).copy()
        elif op == "Tile":
            r = np.tile(x[0], _ax(x[1]))
        elif op == "Pad":
            p = _ax(x[1])
            k = len(p) // 2
            r = np.pad(x[0], [(p[i], p[i + k]) for i in range(k)])
        elif op == "Concat":
            r = np.concatenate(x, axis=a["axis"])
        elif op == "Gather":
            r = np.take(x[0], x[1], axis=a.get("axis", 0), mode="wrap" if np.any(np.asarray(x[1]) < 0) else "raise")
        elif op == "Shape":
            r = np.array(x[0].shape, dtype=np.int64)
        elif op == "Range":
            r = np.arange(x[0], x[1], x[2], dtype=x[0].dtype)
        elif op == "Slice":
            sl = [slice(None)] * x[0].ndim
            for s, e, ax in zip(_ax(x[1]), _ax(x[2]), _ax(x[3])):
                sl[ax] = slice(s, e)
            r = x[0][tuple(sl)]
        elif op == "AveragePool":
            k, s = a["kernel_shape"], a["strides"]
            assert k == s
            b, c, h, w = x[0].shape
            r = x[0].reshape(b, c, h // k[0], k[0], w // k[1], k[1]).mean(axis=(3, 5))
        else:
            raise NotImplementedError(op)
        env[n.output[0]] = np.asarray(r)
    return {o.name: env[o.name] for o in model.graph.output}


# --------------------------------------------------------------------------
# Independent references of the documented semantics
# --------------------------------------------------------------------------


def ref_caption_encoder(pv):
    m = pv.mean(axis=(2, 3))
    stat = 0.5 * m[:, 0] + 0.3 * m[:, 1] + 0.2 * m[:, 2]
    grid = pv.reshape(pv.shape[0], 3, 4, 56, 4, 56).mean(axis=(3, 5)).reshape(pv.shape[0], 48)
    row = np.zeros((pv.shape[0], 768), np.float32)
    row[:, 0] = stat
    row[:, 1:4] = m
    row[:, 4:52] = grid
    return np.repeat(row[:, None, :], 197, axis=1)


def ref_img(ehs):
    v = ehs[:, 0, 0] * np.float32(1000.0) + np.float32(0.5)
    return np.mod(np.floor(v).astype(np.int64), IMG_MOD)


def ref_next_tokens(img, pos, tok):
    """(top, second) for one sample at absolute position pos with input token tok."""
    nxt = TOKEN_BASE + (img * 31 + pos * 7 + tok) % TOKEN_RANGE
    if pos >= 3 + img % 5:
        return EOS, nxt
    return nxt, nxt + 1


def ref_caption(img, start=EOS, max_len=20):
    toks = [start]
    while len(toks) - 1 < max_len:
        top, _ = ref_next_tokens(img, len(toks) - 1, toks[-1])
        if top == EOS:
            break
        toks.append(top)
    return toks[1:]


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def selfcheck(models):
    rng = np.random.RandomState(1234)
    m = dict(models)
    for name, model in models:
        model = inlined(model)
        onnx.checker.check_model(model, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        declared = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}
        check(
            len(inferred.graph.output) == len(declared),
            name + ": output count changed by inference",
        )
        for o in inferred.graph.output:
            check(o.type.tensor_type.elem_type == declared[o.name], name + ": dtype of " + o.name)

    # affine / fixed1 / slow
    x = rng.uniform(-3, 3, (5, 4)).astype(np.float32)
    for name in ("affine_f32.onnx", "slow_affine.onnx"):
        out = run_graph(m[name], {"x": x})
        check(np.array_equal(out["y"], x * 2 + 1), name + " y")
        check(np.allclose(out["sum"], x.sum(axis=1, keepdims=True)), name + " sum")
    out = run_graph(m["fixed1_affine.onnx"], {"x": x[:1]})
    check(np.array_equal(out["y"], x[:1] * 2 + 1), "fixed1_affine y")
    out = run_graph(inlined(m["external_affine.onnx"]), {"x": x})
    check(np.array_equal(out["y"], x * np.float32([1, 2, 3, 4]) + 1), "external_affine y")
    # (the interpreter ignores declared shapes, i.e. it behaves like a
    # batch-dim rewrite to dynamic: fixed1_affine works at batch 2 ...)
    out = run_graph(m["fixed1_affine.onnx"], {"x": x[:2]})
    check(np.array_equal(out["y"], x[:2] * 2 + 1), "fixed1_affine y at batch 2")
    out = run_graph(m["fixed1_reshape.onnx"], {"x": x[:1]})
    check(np.array_equal(out["y"], x[:1, [0, 2, 1, 3]] + 1), "fixed1_reshape y")
    try:  # ... but fixed1_reshape must not.
        run_graph(m["fixed1_reshape.onnx"], {"x": x[:2]})
        check(False, "fixed1_reshape must not accept batch 2")
    except ValueError:
        pass
    for init in m["fixed1_reshape.onnx"].graph.initializer:
        if init.name.startswith("shape_"):
            check(numpy_helper.to_array(init)[0] == 1, "reshape constants must start with 1")

    # dtypes
    feeds = {
        "f32": np.array([[0, 1.5, -2]], np.float32),
        "f16": np.array([[0.5, -1.25, 3]], np.float16),
        "i64": np.array([[0, -7, 1 << 40]], np.int64),
        "i32": np.array([[0, 3, -5]], np.int32),
        "u8": np.array([[0, 7, 254]], np.uint8),
        "b": np.array([[True, False, True]]),
    }
    out = run_graph(m["dtypes.onnx"], feeds)
    check(np.array_equal(out["f32_out"], feeds["f32"] + 1), "dtypes f32")
    check(np.array_equal(out["f16_out"], feeds["f16"] * 2), "dtypes f16")
    check(np.array_equal(out["i64_out"], feeds["i64"] + 7), "dtypes i64")
    check(np.array_equal(out["i32_out"], feeds["i32"] - 3), "dtypes i32")
    check(np.array_equal(out["u8_out"], feeds["u8"] + 1), "dtypes u8")
    check(np.array_equal(out["b_out"], ~feeds["b"]), "dtypes b")

    # LaMa composition
    for name, bsz, scale in (
        ("lama_synth.onnx", 1, 255.0),
        ("lama_synth_dyn.onnx", 2, 255.0),
        ("lama_synth_unit.onnx", 1, 1.0),
    ):
        img = rng.uniform(0, 1, (bsz, 3, 512, 512)).astype(np.float32)
        mask = (rng.uniform(0, 1, (bsz, 1, 512, 512)) > 0.7).astype(np.float32)
        out = run_graph(m[name], {"image": img, "mask": mask})["output"]
        want = np.where(mask > 0.5, 1 - img, img) * scale
        check(np.allclose(out, want, atol=1e-4 * scale), name)

    # CLIP vision: similar images close, different far
    def cos(a, b):
        return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))

    base = smooth_image(rng, 224)
    other = smooth_image(rng, 224)
    shifted = np.roll(base, 3, axis=3) + rng.normal(0, 0.02, base.shape).astype(np.float32)
    pv = np.concatenate([base, shifted, other]).astype(np.float32)
    out = run_graph(m["clip_vision_synth.onnx"], {"pixel_values": pv})
    e = out["image_embeds"]
    check(e.shape == (3, 512) and out["last_hidden_state"].shape == (3, 50, 768), "clip vision shapes")
    check(cos(e[0], e[1]) > 0.95, "clip vision: similar images must be close (%f)" % cos(e[0], e[1]))
    check(cos(e[0], e[2]) < 0.8, "clip vision: different images must be far (%f)" % cos(e[0], e[2]))

    # CLIP text: bag of tokens
    table, proj = clip_text_weights()
    ids = np.array([[49406, 320, 1929, 49407, 0], [49406, 320, 2368, 49407, 0]], np.int64)
    mask = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 0]], np.int64)
    out = run_graph(m["clip_text_synth.onnx"], {"input_ids": ids, "attention_mask": mask})
    want = ((table[ids % 1021] @ proj) * mask[:, :, None]).sum(axis=1)
    check(np.allclose(out["text_embeds"], want, atol=1e-4), "clip text embeds")
    check(cos(out["text_embeds"][0], out["text_embeds"][1]) < 0.95, "clip text: different texts")
    out2 = run_graph(m["clip_text_synth_noattn.onnx"], {"input_ids": ids[:, :4]})
    check(np.allclose(out2["text_embeds"], want, atol=1e-4), "clip text noattn")

    # Caption encoder
    pv = np.concatenate([smooth_image(rng, 224), solid(1, -1, -1), solid(-1, 1, -1)]).astype(np.float32)
    ehs = run_graph(m["caption_encoder_synth.onnx"], {"pixel_values": pv})["last_hidden_state"]
    check(np.allclose(ehs, ref_caption_encoder(pv), atol=1e-5), "caption encoder")
    imgs = ref_img(ehs)
    check(len(set(imgs.tolist())) == 3, "caption encoder: distinct img values")

    # Caption decoder: uncached == cached, EOS after 3 + img%5 tokens.
    for name, layers, heads, hs in (
        ("caption_decoder_synth.onnx", 12, 12, 64),
        ("caption_decoder_synth_2layer.onnx", 2, 4, 16),
    ):
        check_decoder(m[name], layers, heads, hs, ehs, imgs)

    check_rembg_models(m, rng)
    check_sd(m, rng)


def ref_sam_mask(emb, coords, labels, h, w):
    """The synthetic SAM decoder's mask, written out pixel by pixel."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    logit = np.full((h, w), NEG, np.float32)
    cut = np.zeros((h, w), bool)
    box = [None, None]
    for (px, py), lab in zip(coords, labels):
        d = SAM_RADIUS * SAM_RADIUS - ((xs - px) ** 2 + (ys - py) ** 2)
        if lab == 1:
            logit = np.maximum(logit, d)
        elif lab == 0:
            cut |= d > 0
        elif lab == 2:
            box[0] = (px, py)
        elif lab == 3:
            box[1] = (px, py)
    if box[0] is not None:
        (x0, y0), (x1, y1) = box[0], box[1]
        inside = np.minimum(np.minimum(xs - x0, x1 - xs), np.minimum(ys - y0, y1 - ys))
        logit = np.maximum(logit, inside)
    logit[cut] = -1
    return logit * np.sign(emb.max())


def check_rembg_models(m, rng):
    x = rng.normal(0, 1, (1, 3, 1024, 1024)).astype(np.float32)
    d = 3 * (x[:, 0:1] - x[:, 2:3])
    for name, inp, out, logits in (
        ("birefnet_synth.onnx", "input_image", "output_image", True),
        ("isnet_anime_synth.onnx", "img", "mask", False),
        ("bria_rmbg_synth.onnx", "pixel_values", "alphas", False),
        ("ben2_synth.onnx", "input", "output", False),
    ):
        got = run_graph(m[name], {inp: x})[out]
        want = d if logits else 1 / (1 + np.exp(-d))
        check(got.shape == (1, 1, 1024, 1024) and np.allclose(got, want, atol=1e-5), name)

    x = rng.normal(0, 1, (1, 3, 768, 768)).astype(np.float32)
    out = run_graph(m["u2net_cloth_seg_synth.onnx"], {"input.1": x})
    want = np.concatenate([np.full((1, 1, 768, 768), 0.5, np.float32), x], axis=1)
    check(np.allclose(out["d0"], want, atol=1e-5), "cloth d0")
    check(np.allclose(out["d3"], want / 4, atol=1e-5), "cloth d3")

    img = rng.uniform(0, 255, (684, 1024, 3)).astype(np.float32)
    emb = run_graph(m["sam_encoder_synth.onnx"], {"input_image": img})["image_embeddings"]
    means = img.mean(axis=(0, 1)) / 255
    check(emb.shape == (1, 256, 64, 64) and np.allclose(emb[0, 7, 3, 5], means[7 % 3], atol=1e-5), "sam encoder")
    for coords, labels in (
        ([[100, 80], [300, 200], [0, 0]], [1, 1, -1]),
        ([[50, 60], [400, 300], [200, 150], [0, 0]], [2, 3, 0, -1]),
        ([[500, 500], [0, 0]], [0, -1]),
    ):
        c = np.array([coords], np.float32)
        lab = np.array([labels], np.float32)
        feeds = {
            "image_embeddings": emb,
            "point_coords": c,
            "point_labels": lab,
            "mask_input": np.zeros((1, 1, 256, 256), np.float32),
            "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": np.array([684, 1024], np.float32),
        }
        out = run_graph(m["sam_decoder_synth.onnx"], feeds)
        want = ref_sam_mask(emb, c[0], lab[0], 684, 1024)
        check(out["masks"].shape == (1, 1, 684, 1024), "sam masks shape")
        check(np.array_equal(out["masks"][0, 0] > 0, want > 0), "sam decoder %r" % (labels,))
        feeds["image_embeddings"] = np.zeros_like(emb)
        check(not (run_graph(m["sam_decoder_synth.onnx"], feeds)["masks"] > 0).any(), "sam: black image, empty mask")


def sd_prompt_ids(words, pad):
    """BOS, word ids, EOS, padded to 77 with pad (SD-Turbo pads with 0)."""
    ids = [49406] + list(words) + [49407]
    return np.array([ids + [pad] * (77 - len(ids))], np.int64)


def ref_sd_features(ids):
    f = np.zeros(ids.shape + (SD_HIDDEN,), np.float32)
    for k, tok in enumerate((SD_RED, SD_GREEN, SD_BLUE)):
        f[..., k] = (ids == tok).astype(np.float32) * np.float32(SD_COLOUR_GAIN) - np.float32(1)
    f[..., 3] = (ids % 17).astype(np.float32) * np.float32(1.0 / 34) - np.float32(0.25)
    return f


def check_sd(m, rng):
    ids = np.concatenate([sd_prompt_ids([320, 2368], 0), sd_prompt_ids([SD_RED, SD_RED], 49407)])
    te = run_graph(m["sd_text_encoder_synth.onnx"], {"input_ids": ids.astype(np.int32)})
    want = ref_sd_features(ids)
    check(np.array_equal(te["last_hidden_state"], want), "sd text encoder")
    check(np.array_equal(te["pooler_output"], want[:, -1]), "sd text encoder pooler")
    c = want[:, :, :4].mean(axis=1)
    check(abs(c[0, 0] + 1) < 1e-6 and abs(c[1, 0]) < 1e-6, "two red words move channel 0 from -1 to 0: %r" % c[:, 0])
    te16 = run_graph(m["sd_text_encoder_synth_fp16.onnx"], {"input_ids": ids})
    check(te16["last_hidden_state"].dtype == np.float16, "fp16 text encoder dtype")
    check(np.allclose(te16["last_hidden_state"].astype(np.float32), want, atol=1e-2), "fp16 text encoder")

    sig = sd_training_sigmas()
    check(abs(sig[999] - 14.6146) < 1e-4, "sigma(999) = %r" % sig[999])
    ehs = te["last_hidden_state"]
    for t in (999, 499, 3):
        sample = rng.normal(0, 1, (2, 4, 8, 12)).astype(np.float32)
        out = run_graph(m["sd_unet_synth.onnx"], {"sample": sample, "timestep": np.array([t], np.int64),
                                                  "encoder_hidden_states": ehs})["out_sample"]
        x = sample * np.sqrt(sig[t] * sig[t] + 1)
        target = (c[:, :, None, None] + 0.5 * np.tanh(sample)) * np.float32(SD_VAE_SCALE)
        check(np.allclose(out, (x - target) / sig[t], atol=1e-4), "sd unet at t=%d" % t)
        # Euler's predicted x0 is the target.
        check(np.allclose(x - sig[t] * out, target, atol=1e-4), "sd unet x0 at t=%d" % t)
        o16 = run_graph(m["sd_unet_synth_fp16.onnx"], {"sample": sample.astype(np.float16),
                                                       "timestep": np.array(float(t) + 0.7, np.float32),
                                                       "encoder_hidden_states": ehs.astype(np.float16)})["out_sample"]
        check(o16.dtype == np.float16 and np.allclose(o16.astype(np.float32), out, rtol=2e-2, atol=2e-2), "fp16 unet t=%d" % t)

    z = rng.normal(0, 1, (2, 4, 3, 5)).astype(np.float32)
    img = run_graph(m["sd_vae_decoder_synth.onnx"], {"latent_sample": z})["sample"]
    ref = np.tanh(z[:, :3] + 0.25 * z[:, 3:4]).repeat(8, axis=2).repeat(8, axis=3)
    check(img.shape == (2, 3, 24, 40) and np.allclose(img, ref, atol=1e-6), "sd vae decoder")
    img16 = run_graph(m["sd_vae_decoder_synth_fp16.onnx"], {"latent_sample": z.astype(np.float16)})["sample"]
    check(np.allclose(img16.astype(np.float32), ref, atol=1e-2), "fp16 sd vae decoder")

    x = np.clip(smooth_image(rng, 64), -0.9, 0.9)[:, :, :, :48].astype(np.float32)  # [1,3,64,48]
    lp = run_graph(m["sd_vae_encoder_synth.onnx"], {"sample": x})["latent_parameters"]
    check(lp.shape == (1, 8, 8, 6) and np.all(lp[:, 4:] == -30) and np.all(lp[:, 3] == 0), "sd vae encoder layout")
    back = run_graph(m["sd_vae_decoder_synth.onnx"], {"latent_sample": lp[:, :4]})["sample"]
    pooled = x.reshape(1, 3, 8, 8, 6, 8).mean(axis=(3, 5)).repeat(8, axis=2).repeat(8, axis=3)
    check(np.allclose(back, pooled, atol=1e-5), "sd vae encode-decode returns the 8x8 means")
    ls = run_graph(m["sd_vae_encoder_synth_fp16.onnx"], {"sample": x.astype(np.float16)})["latent_sample"]
    check(ls.dtype == np.float16 and np.allclose(ls.astype(np.float32), lp[:, :4], atol=2e-2), "fp16 sd vae encoder")

    imgs = rng.uniform(0, 1, (3, 16, 24, 3)).astype(np.float32)
    imgs[0, :8, :8, 0] = 0.9
    imgs[1, :8, :8, 0] = 0.1
    imgs[2, :8, :8, 0] = 0.5
    clip_in = rng.normal(0, 1, (3, 3, 224, 224)).astype(np.float32)
    sc = run_graph(m["sd_safety_checker_synth.onnx"], {"clip_input": clip_in, "images": imgs})
    check(list(sc["has_nsfw_concepts"]) == [True, False, False], "sd safety checker flags %r" % sc["has_nsfw_concepts"])
    check(np.all(sc["out_images"][0] == 0) and np.array_equal(sc["out_images"][1:], imgs[1:]), "sd safety checker out_images")


def smooth_image(rng, size):
    """A smooth random 'photo' in [-1,1]: low-res noise, upsampled."""
    low = rng.uniform(-1, 1, (1, 3, 4, 4)).astype(np.float32)
    return np.kron(low, np.ones((size // 4, size // 4), np.float32)) + rng.normal(
        0, 0.05, (1, 3, size, size)
    ).astype(np.float32)


def solid(r, g, b):
    return np.broadcast_to(np.array([r, g, b], np.float32)[None, :, None, None], (1, 3, 224, 224))


def decoder_feeds(layers, ids, ehs, past, use_cache):
    feeds = {"input_ids": ids, "encoder_hidden_states": ehs, "use_cache_branch": np.array([use_cache])}
    for i in range(layers):
        feeds["past_key_values.%d.key" % i] = past[2 * i]
        feeds["past_key_values.%d.value" % i] = past[2 * i + 1]
    return feeds


def check_decoder(model, layers, heads, hs, ehs, imgs):
    bsz = ehs.shape[0]
    empty = [np.zeros((bsz, heads, 0, hs), np.float32) for _ in range(2 * layers)]
    captions = [ref_caption(int(i)) for i in imgs]
    check(all(len(c) == 3 + int(i) % 5 for c, i in zip(captions, imgs)), "caption lengths")

    # Uncached: feed the whole (reference) sequence at once with P=0 and
    # compare every position with the reference rule.
    seqs = np.full((bsz, 9), EOS, np.int64)
    for b, c in enumerate(captions):
        seqs[b, 1 : 1 + len(c)] = c
    out = run_graph(model, decoder_feeds(layers, seqs, ehs, empty, False))
    lg = out["logits"]
    check(lg.shape == (bsz, 9, VOCAB), "logits shape")
    for b in range(bsz):
        for t in range(9):
            top, sec = ref_next_tokens(int(imgs[b]), t, int(seqs[b, t]))
            row = lg[b, t]
            check(row[top] == TOP_LOGIT and row[sec] == SECOND_LOGIT, "logit values")
            check(np.count_nonzero(row) == 2, "only two non-zero logits")
    for i in range(layers):
        k, v = out["present.%d.key" % i], out["present.%d.value" % i]
        check(k.shape == (bsz, heads, 9, hs), "present shape")
        check(np.array_equal(k[:, 0, :, 0], seqs + LAYER_OFFSET * i), "present key content")
        check(np.array_equal(v[0, -1, :, -1], np.arange(9) + LAYER_OFFSET * i), "present value content")

    # Cached greedy loop, one token at a time.
    past = empty
    tokens = np.full((bsz, 1), EOS, np.int64)
    gen = [[] for _ in range(bsz)]
    done = [False] * bsz
    for step in range(10):
        out = run_graph(model, decoder_feeds(layers, tokens, ehs, past, step > 0))
        past = [out["present.%d.%s" % (i, k)] for i in range(layers) for k in ("key", "value")]
        check(past[0].shape[2] == step + 1, "cache grows by one per step")
        nxt = out["logits"][:, -1].argmax(axis=-1)
        for b in range(bsz):
            if not done[b]:
                if nxt[b] == EOS:
                    done[b] = True
                else:
                    gen[b].append(int(nxt[b]))
        tokens = nxt[:, None].astype(np.int64)
        if all(done):
            break
    check(gen == captions, "cached loop == reference captions: %r vs %r" % (gen, captions))

    # use_cache_branch=false ignores a non-empty past.
    out = run_graph(model, decoder_feeds(layers, seqs[:, :2], ehs, past, False))
    check(out["present.0.key"].shape[2] == 2, "use_cache_branch=false ignores past")


# --------------------------------------------------------------------------


def main():
    check_only = "--check" in sys.argv[1:]
    models = all_models()
    selfcheck(models)
    stale = []
    total = 0
    files = [(name, model.SerializeToString()) for name, model in models] + sorted(SIDE_FILES.items())
    for name, data in files:
        total += len(data)
        check(len(data) < 400 * 1024, name + " too large")
        path = os.path.join(HERE, name)
        if check_only:
            try:
                with open(path, "rb") as f:
                    if f.read() != data:
                        stale.append(name)
            except FileNotFoundError:
                stale.append(name)
        else:
            with open(path, "wb") as f:
                f.write(data)
        print("%-36s %8d bytes" % (name, len(data)))
    print("%-36s %8d bytes" % ("total", total))
    check(total < 1536 * 1024, "total size too large")
    if stale:
        print("stale (re-run gen.py):", ", ".join(stale))
        sys.exit(1)


if __name__ == "__main__":
    main()
