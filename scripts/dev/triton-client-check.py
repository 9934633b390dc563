"""By-hand check of imgserve's KServe v2 surface with Triton's own Python
client (tritonclient.http and tritonclient.grpc), on u2netp: live, ready,
model ready, server and model metadata, model configuration, repository
index, JSON, binary (HTTP) and raw (gRPC, unary and stream) infers with equal
outputs, statistics that count them, and errors for an unknown model.

Not a test: the project's tests must not depend on Triton's client. Run it
against a running server with the client on PYTHONPATH (it needs Debian's
python3-numpy, python3-geventhttpclient, python3-rapidjson, python3-grpcio,
python3-protobuf and python3-packaging, and Debian's /usr/bin/python3):

    PYTHONPATH=/path/to/tritonclient /usr/bin/python3 scripts/dev/triton-client-check.py 127.0.0.1:8080 127.0.0.1:8081
"""
import json, sys
import numpy as np
import tritonclient.http as httpclient
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

HTTP = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8080"
GRPC = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1:8081"
M = "u2netp"
rng = np.random.default_rng(7)
x = (rng.random((1, 3, 320, 320), dtype=np.float32) * 4 - 2).astype(np.float32)

def show(k, v):
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    print(f"  {k}: {s[:400]}")

def infer_count(stats):
    ms = stats["model_stats"][0]
    return ms["inference_count"], ms["execution_count"], ms["inference_stats"]["success"]["count"]

print("== HTTP (tritonclient.http) ==")
h = httpclient.InferenceServerClient(HTTP)
show("is_server_live", h.is_server_live())
show("is_server_ready", h.is_server_ready())
show("is_model_ready", h.is_model_ready(M))
show("server_metadata", h.get_server_metadata())
md = h.get_model_metadata(M); show("model_metadata", md)
show("model_config", h.get_model_config(M))
show("repository_index", h.get_model_repository_index()[:4])
outs = [o["name"] for o in md["outputs"]]
before = infer_count(h.get_inference_statistics(M)); show("stats before (inference_count, execution_count, success)", before)

def http_infer(binary):
    i = httpclient.InferInput("input.1", list(x.shape), "FP32"); i.set_data_from_numpy(x, binary_data=binary)
    r = h.infer(M, [i], outputs=[httpclient.InferRequestedOutput(n, binary_data=binary) for n in outs], request_id="hand-" + str(binary))
    return r, {n: r.as_numpy(n) for n in outs}

rj, json_out = http_infer(False)
rb, bin_out = http_infer(True)
show("JSON infer response id / outputs", (rj.get_response()["id"], [(o["name"], o["shape"]) for o in rj.get_response()["outputs"]]))
show("binary infer response outputs", [(o["name"], o["parameters"]) for o in rb.get_response()["outputs"]])
same = all(np.array_equal(json_out[n], bin_out[n]) for n in outs)
print(f"  binary outputs == JSON outputs (all {len(outs)}, exact): {same}")
after = infer_count(h.get_inference_statistics(M)); show("stats after 2 HTTP infers", after)
print("  counted:", [a - b for a, b in zip(after, before)])
st = h.get_inference_statistics(M)["model_stats"][0]
show("inference_stats", st["inference_stats"]); show("batch_stats", st["batch_stats"])
try:
    h.get_model_metadata("nope"); print("  unknown model: NO ERROR")
except InferenceServerException as e:
    print("  unknown model metadata ->", e.status(), e.message())
try:
    i = httpclient.InferInput("input.1", list(x.shape), "FP32"); i.set_data_from_numpy(x, binary_data=True)
    h.infer("nope", [i]); print("  unknown model infer: NO ERROR")
except InferenceServerException as e:
    print("  unknown model infer ->", e.status(), e.message())

print("== gRPC (tritonclient.grpc) ==")
g = grpcclient.InferenceServerClient(GRPC)
show("is_server_live", g.is_server_live())
show("is_server_ready", g.is_server_ready())
show("is_model_ready", g.is_model_ready(M))
show("server_metadata", g.get_server_metadata(as_json=True))
show("model_metadata", g.get_model_metadata(M, as_json=True))
show("model_config", g.get_model_config(M, as_json=True))
show("repository_index", g.get_model_repository_index(as_json=True)["models"][:4])
before = tuple(int(v) for v in infer_count(g.get_inference_statistics(M, as_json=True)))
i = grpcclient.InferInput("input.1", list(x.shape), "FP32"); i.set_data_from_numpy(x)
r = g.infer(M, [i], outputs=[grpcclient.InferRequestedOutput(n) for n in outs], request_id="hand-grpc")
gr = r.get_response(as_json=True)
show("infer response id / outputs", (gr["id"], [(o["name"], o["shape"]) for o in gr["outputs"]]))
print("  raw_output_contents:", len(r.get_response().raw_output_contents), "buffers")
same = all(np.array_equal(r.as_numpy(n), json_out[n]) for n in outs)
print(f"  gRPC raw outputs == HTTP JSON outputs (all {len(outs)}, exact): {same}")
# the stream API too
import queue
q = queue.Queue()
g.start_stream(callback=lambda result, error: q.put((result, error)))
g.async_stream_infer(M, [i], outputs=[grpcclient.InferRequestedOutput(outs[0])], request_id="stream-1")
res, err = q.get(timeout=60)
g.stop_stream()
print("  stream infer:", "error " + str(err) if err else f"id={res.get_response().id} equal={np.array_equal(res.as_numpy(outs[0]), json_out[outs[0]])}")
after = tuple(int(v) for v in infer_count(g.get_inference_statistics(M, as_json=True)))
show("stats after 2 gRPC infers (unary + stream)", after)
print("  counted:", [a - b for a, b in zip(after, before)])
show("inference_stats", g.get_inference_statistics(M, as_json=True)["model_stats"][0]["inference_stats"])
for what, call in [("metadata", lambda: g.get_model_metadata("nope")), ("infer", lambda: g.infer("nope", [i]))]:
    try:
        call(); print(f"  unknown model {what}: NO ERROR")
    except InferenceServerException as e:
        print(f"  unknown model {what} ->", e.status(), e.message())
