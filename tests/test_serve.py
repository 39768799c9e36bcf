"""`tl serve`: a real server subprocess on a loopback port, real clients.

One tiny run per plugin is trained once for the module; one server serves all four. The
tests check that a third-party KServe v2 client (tritonclient.http) and the raw-data
endpoint give what `tl predict` gives, that concurrent load is served without errors while
bad requests are answered 4xx, and (last) that SIGTERM with requests in flight drains them
and exits 0.
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cli_inprocess import invoke  # noqa: E402
from reliability_data import COMMON, PLUGINS  # noqa: E402

NAMES = ["medical", "fraud", "recsys", "driving"]
EXTRA = {"driving": ["--no-baseline"]}  # the FCOS baseline costs more than the model here


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    """Each plugin's run directory, data and `tl predict` rows (JSON records)."""
    import torch

    for name in NAMES:
        pytest.importorskip(f"tl_{name}")
    root = tmp_path_factory.mktemp("serve")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        found = {}
        for name in NAMES:
            started = time.perf_counter()
            data, args = PLUGINS[name](root / f"data-{name}")
            code, out, err = invoke("run", name, "--data", str(data), *args, *COMMON,
                                    "--epochs", "1", *EXTRA.get(name, []),
                                    "--out", str(root / "runs"))  # fmt: skip
            assert code == 0, err[-3000:]
            run_dir = Path(out.strip().splitlines()[-1])
            print(f"{name}: trained in {time.perf_counter() - started:.1f}s", file=sys.stderr)
            rows = root / f"{name}.json"
            code, _, err = invoke("predict", str(run_dir), "--data", str(data), "--out", str(rows))
            assert code == 0, err[-3000:]
            found[name] = {"run": run_dir, "data": Path(data), "rows": json.loads(rows.read_text())}
        return found
    finally:
        torch.set_num_threads(threads)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, runs: dict[str, dict], log: Path, *args: str) -> None:
        self.port = free_port()
        self.log = log
        self.names = {name: runs[name]["run"].name for name in runs}
        command = [sys.executable, "-m", "tl.cli", "serve", *(str(r["run"]) for r in runs.values()),
                   "--port", str(self.port), "--threads", "1", *args]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=env
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, log.read_text()[-3000:]
            try:
                if self.get("/v2/health/ready")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("the server did not get ready: " + log.read_text()[-3000:])

    def request(self, method: str, path: str, body: bytes = b"", headers=None, conn=None):
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body or None, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read(), dict(response.getheaders())
        finally:
            if own:
                conn.close()

    def get(self, path: str):
        return self.request("GET", path)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=40)


@pytest.fixture(scope="module")
def server(runs, tmp_path_factory):
    served = Server(runs, tmp_path_factory.mktemp("serve-log") / "server.log",
                    "--max-batch", "16", "--max-delay-ms", "5", "--max-body-mb", "1")  # fmt: skip
    yield served
    served.stop()


def same_rows(got: list[dict], expected: list[dict], ignore=()) -> None:
    assert len(got) == len(expected), (got, expected)
    for mine, theirs in zip(got, expected, strict=True):
        assert set(mine) == set(theirs), (mine, theirs)
        for key in set(mine) - set(ignore):
            a, b = mine[key], theirs[key]
            if isinstance(b, (float, list)):
                np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), atol=1e-5)
            else:
                assert a == b, (key, a, b)


def read_inputs(run: Path, data: Path):
    """The model's input tensors for ``data``, read by the plugin's own reader."""
    from tl.core import Config
    from tl.core.inference import RuntimeConfig
    from tl.core.registry import load_plugin
    from tl.core.runtime import load_onnx_model

    model = load_onnx_model(run, device="cpu")
    plugin = load_plugin(model.plugin)
    config = Config(RuntimeConfig(data=str(data)), plugin.predict_options_type(), "predict")
    return model, plugin, config, list(plugin.read_batches(model, data, config, 64, False))


@pytest.mark.parametrize("name", ["medical", "fraud"])
def test_triton_client_matches_tl_predict(server, runs, name):
    import tritonclient.http as triton

    run = runs[name]
    model, plugin, config, batches = read_inputs(run["run"], run["data"])
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    model_name = server.names[name]
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(model_name)
    meta = client.get_model_metadata(model_name)
    assert [i["name"] for i in meta["inputs"]] == model.input_names
    assert meta["tl"]["plugin"] == name
    rows = []
    for k, batch in enumerate(batches):
        inputs = []
        for input_name, array in batch.inputs.items():
            tensor = triton.InferInput(
                input_name, list(array.shape), triton.np_to_triton_dtype(array.dtype)
            )
            tensor.set_data_from_numpy(array, binary_data=k % 2 == 0)  # binary and JSON
            inputs.append(tensor)
        result = client.infer(model_name, inputs)
        outputs = {o: result.as_numpy(o) for o in model.output_names}
        frame = plugin.decode(model, batch, outputs, config)
        rows += json.loads(frame.to_json(orient="records", double_precision=15))
    same_rows(rows, run["rows"])


def post_raw(server, name, body, kind, query=""):
    path = f"/v1/models/{server.names[name]}/predict{query}"
    return server.request("POST", path, body, {"content-type": kind})


def multipart(files: list[Path]) -> tuple[bytes, str]:
    boundary = "tl-test-boundary"
    parts = []
    for file in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                     f'filename="{file.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                     .encode() + file.read_bytes() + b"\r\n")  # fmt: skip
    return b"".join(
        parts
    ) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def by_base(rows: list[dict], key: str) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(Path(row[key]).name, []).append({**row, key: Path(row[key]).name})
    return grouped


@pytest.mark.parametrize("name", NAMES)
def test_raw_endpoint_matches_tl_predict(server, runs, name):
    run = runs[name]
    expected = run["rows"]
    if name in ("medical", "driving"):
        key = "item" if name == "medical" else "file_name"
        files = sorted(p for p in run["data"].rglob("*") if p.suffix in {".png", ".jpg", ".dcm"})
        files = [files[0], files[len(files) // 2], files[-1]]
        wanted = by_base(expected, key)
        body, kind = multipart(files)
        status, content, _ = post_raw(server, name, body, kind)
        assert status == 200, content
        got = by_base(json.loads(content)["rows"], key)
        assert set(got) <= {f.name for f in files}
        for file in files:
            same_rows(got.get(file.name, []), wanted.get(file.name, []), ignore={"image_id"})
        status, content, _ = post_raw(server, name, files[0].read_bytes(), "application/octet-stream",
                                      f"?filename={files[0].name}")  # fmt: skip
        assert status == 200, content
        same_rows(json.loads(content)["rows"], wanted.get(files[0].name, []), ignore={"image_id"})
        if name == "medical":  # no name and a wrong content type: the bytes say it is DICOM
            dicom = next(p for p in sorted(run["data"].rglob("*.dcm")))
            status, content, _ = post_raw(server, name, dicom.read_bytes(), "image/png")
            assert status == 200, content
            same_rows(json.loads(content)["rows"], wanted[dicom.name], ignore={"item"})
        return
    table = pd.read_csv(run["data"])
    if name == "fraud":
        part = table.iloc[:25]
        expected = expected[:25]
    else:
        users = sorted(table["user_id"].unique())[:4]
        part = table[table["user_id"].isin(users)]
        expected = [row for row in expected if row["user_id"] in users]
    body = part.to_json(orient="records", double_precision=15).encode()
    status, content, _ = post_raw(server, name, body, "application/json")
    assert status == 200, content
    path = f"/v1/models/{server.names[name]}/predict"
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    status, gzipped, _ = server.request("POST", path, gzip.compress(body), headers)
    assert status == 200 and json.loads(gzipped) == json.loads(content), gzipped[:300]
    same_rows(json.loads(content)["rows"], expected)


def infer_body(name: str, arrays: dict[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """A v2 request with binary tensors, as tritonclient builds it."""
    from tritonclient.utils import np_to_triton_dtype

    inputs = [{"name": k, "datatype": np_to_triton_dtype(a.dtype), "shape": list(a.shape),
               "parameters": {"binary_data_size": a.nbytes}} for k, a in arrays.items()]  # fmt: skip
    header = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode()
    body = header + b"".join(a.tobytes() for a in arrays.values())
    return body, {"Inference-Header-Content-Length": str(len(header))}


BAD = [  # (what, method, path template, body, content type, expected status)
    ("malformed JSON", "/v2/models/{medical}/infer", b'{"inputs": [', "application/json", 400),
    ("wrong datatype", "/v2/models/{medical}/infer",
     b'{"inputs":[{"name":"image","datatype":"FP32","shape":[1],"data":[1]}]}', "application/json", 400),
    ("wrong shape", "/v2/models/{medical}/infer",
     b'{"inputs":[{"name":"image","datatype":"UINT8","shape":[1,2],"data":[1,2]}]}', "application/json", 400),
    ("wrong count", "/v2/models/{medical}/infer",
     b'{"inputs":[{"name":"image","datatype":"UINT8","shape":[1,1,32,32],"data":[1,2]}]}', "application/json", 400),
    ("unknown model", "/v2/models/nope/infer", b'{"inputs": []}', "application/json", 404),
    ("unknown model raw", "/v1/models/nope/predict", b"x", "image/png", 404),
    ("corrupt image", "/v1/models/{medical}/predict?filename=scan.png", b"\x89PNG not really", "image/png", 422),
    ("corrupt driving image", "/v1/models/{driving}/predict", b"\xff\xd8\xff broken", "image/jpeg", 422),
    ("not rows", "/v1/models/{fraud}/predict", b"[1, 2]", "application/json", 400),
    ("bad option", "/v1/models/{recsys}/predict?top_k=0", b'[{"user_id": 1, "item_id": 2}]', "application/json", 400),
    ("unknown option", "/v1/models/{recsys}/predict?topk=3", b'[{"user_id": 1, "item_id": 2}]', "application/json", 400),
    ("server path option", "/v1/models/{driving}/predict?draw=/tmp/x", b"\xff\xd8\xff", "image/jpeg", 400),
    ("too large", "/v2/models/{medical}/infer", b"0" * (2**20 + 2**18), "application/json", 413),
    ("inflates too large", "/v2/models/{medical}/infer", gzip.compress(b" " * 8 * 2**20), "gzip", 413),
    ("no route", "/v3/anything", b"", "text/plain", 404),
]  # fmt: skip


def check_bad_inputs(server) -> list[str]:
    problems = []
    for what, path, body, kind, status in BAD:
        headers = {"content-type": kind}
        if kind == "gzip":
            headers = {"content-type": "application/json", "content-encoding": "gzip"}
        got, content, _ = server.request("POST", path.format(**server.names), body, headers)
        try:
            error = json.loads(content)["error"]
        except (ValueError, KeyError):
            error = None
        if got != status or not error or " — " not in error or "Traceback" in error:
            problems.append(f"{what}: {got} {content[:200]!r}")
    return problems


def test_load_with_bad_inputs_meanwhile(server, runs):
    _, _, _, batches = read_inputs(runs["medical"]["run"], runs["medical"]["data"])
    image = batches[0].inputs["image"]
    path = f"/v2/models/{server.names['medical']}/infer"
    latencies: list[float] = []
    errors: list[str] = []

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        for i in range(50):
            item = (k + i) % len(image)
            body, headers = infer_body("medical", {"image": image[item : item + 1]})
            start = time.perf_counter()
            try:
                status, content, reply = server.request("POST", path, body, headers, conn)
            except OSError as exc:
                errors.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                continue
            latencies.append(time.perf_counter() - start)
            if status != 200:
                errors.append(f"{status} {content[:200]!r}")
                continue
            header = int(reply["inference-header-content-length"])
            document = json.loads(content[:header])
            assert document["outputs"][0]["shape"][0] == 1
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for thread in threads:
        thread.start()
    bad = check_bad_inputs(server)
    for thread in threads:
        thread.join()
    assert not errors, errors[:5]
    assert not bad, bad
    assert len(latencies) == 16 * 50
    p50, p99 = np.percentile(np.asarray(latencies) * 1000, [50, 99])
    print(f"\n16 clients x 50 requests: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    assert server.get("/v2/health/ready")[0] == 200
    status, text, _ = server.get("/metrics")
    metrics = text.decode()
    model = server.names["medical"]
    count = _sample(metrics, f'tl_batch_size_count{{model="{model}"}}')
    total = _sample(metrics, f'tl_batch_size_sum{{model="{model}"}}')
    assert total >= 16 * 50 and total / count > 1.0, (total, count)  # requests were batched
    # and no onnxruntime call was larger than --max-batch 16 (the 24-image requests of
    # test_triton_client_matches_tl_predict ran in parts)
    assert _sample(metrics, f'tl_batch_size_bucket{{le="16.0",model="{model}"}}') == count
    assert _sample(metrics, f'tl_request_errors_total{{endpoint="infer",model="{model}"}}') >= 3
    log = server.log.read_text()
    assert f'"POST {path} HTTP/1.1" 200' in log and "Traceback" not in log, log[-3000:]


def _sample(metrics: str, name: str) -> float:
    line = next(ln for ln in metrics.splitlines() if ln.startswith(name + " "))
    return float(line.split()[-1])


def test_bad_command_lines_fail_before_binding(runs, tmp_path):
    code, _, err = invoke("serve", str(tmp_path / "missing"))
    assert code == 2 and err.startswith("error: no ONNX model found"), err
    run = str(runs["medical"]["run"])
    code, _, err = invoke("serve", run, "--name", "a", "--name", "b")
    assert code == 2 and "--name" in err and "Traceback" not in err, err
    code, _, err = invoke("serve", run, run)
    assert code == 2 and "two models are named" in err, err
    code, _, err = invoke("serve", run, "--name", "bad/name")
    assert code == 2 and "cannot be used in a URL" in err, err
    from tl.core.serving.models import default_name

    run_dir = runs["medical"]["run"]
    assert default_name(run_dir) == default_name(run_dir / "model.onnx") == run_dir.name
    assert default_name(run_dir / "model.int8.onnx") == f"{run_dir.name}-int8"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, _, err = invoke("serve", run, "--port", str(taken.getsockname()[1]))
    assert code == 2 and err.startswith("error: cannot listen on 127.0.0.1:"), err


def test_serving_path_imports_no_torch(runs):
    """Loading every model and answering a raw request in-process imports no torch."""
    script = f"""
import sys
from starlette.testclient import TestClient
from tl.core.serving.app import build_app
from tl.core.serving.metrics import ServerMetrics
from tl.core.serving.models import load_models
metrics = ServerMetrics(8)
models = load_models([{", ".join(repr(str(r["run"])) for r in runs.values())}], [], device="cpu",
                     threads=1, max_batch=8, max_delay=0.0, metrics=metrics)
with TestClient(build_app(models, metrics, max_body=2**20)) as client:
    data = open({str(next(runs["medical"]["data"].rglob("*.png")))!r}, "rb").read()
    reply = client.post(f"/v1/models/{{models[0].name}}/predict", content=data,
                        headers={{"content-type": "image/png"}})
    assert reply.status_code == 200, reply.text
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm", "peft"))
assert not loaded, loaded
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_client_gone_mid_body_is_counted_499_not_a_bad_request(server):
    path = f"/v2/models/{server.names['medical']}/infer"
    for _ in range(3):
        gone = socket.create_connection(("127.0.0.1", server.port))
        gone.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".encode()
                     + b'{"inputs": [')  # fmt: skip
        gone.close()
    name = f'tl_requests_total{{endpoint="infer",model="{server.names["medical"]}",status="499"}}'

    def closed() -> float:
        metrics = server.get("/metrics")[1].decode()
        return _sample(metrics, name) if name in metrics else 0.0

    deadline = time.monotonic() + 10
    while closed() < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert closed() == 3
    assert server.get("/v2/health/ready")[0] == 200


def test_sigterm_drains_in_flight_requests_and_exits_0(server, runs):
    """Last: stops the module's server. A request whose body is still arriving when SIGTERM
    comes, and the load running meanwhile, are answered; the server then exits 0."""
    _, _, _, batches = read_inputs(runs["medical"]["run"], runs["medical"]["data"])
    body, headers = infer_body("medical", {"image": batches[0].inputs["image"][:2]})
    path = f"/v2/models/{server.names['medical']}/infer"
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    slow = socket.create_connection(("127.0.0.1", server.port))
    slow.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{head}\r\n"
                 .encode() + body[:100])  # fmt: skip
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                statuses.append(server.request("POST", path, body, headers)[0])
            except OSError:  # refused once the server stopped listening
                time.sleep(0.01)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert server.process.poll() is None  # still draining: the slow request is in flight
    slow.sendall(body[100:])
    reply = b""
    while b"\r\n\r\n" not in reply or len(reply) < 200:
        chunk = slow.recv(65536)
        if not chunk:
            break
        reply += chunk
    slow.close()
    assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
    assert server.process.wait(timeout=30) == 0, server.log.read_text()[-3000:]
    stop.set()
    for thread in threads:
        thread.join()
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    assert "every request in flight was answered" in server.log.read_text()


def test_onnxruntime_refusing_values_is_the_clients_400(runs):
    import onnxruntime as ort
    from tl.core.serving.errors import model_failure

    session = ort.InferenceSession(str(runs["medical"]["run"] / "model.onnx"))
    with pytest.raises(Exception) as refused:  # onnxruntime's InvalidArgument: a float image
        session.run(None, {"image": np.zeros((1, 1, 32, 32), np.float32)})
    failure = model_failure(refused.value)
    assert failure is not None and failure.status == 400 and " — " in failure.message
    assert model_failure(ValueError("a bug")) is None
