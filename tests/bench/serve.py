"""`tl serve` on a medical CNN, CPU: dynamic batching's throughput gain and the server's
overhead at one client.

    python tests/bench/serve.py [RUN_DIR|model.onnx] [--clients 16] [--requests 40]
                                [--backbone resnet18] [--image-size 128] [--threads 1]
                                [--device cpu|cuda]

Without a model, a one-epoch `tl run medical` on a tiny generated dataset makes one
(``--weights none``: speed does not depend on the weights). Two servers are started on
loopback ports, one with dynamic batching (``--max-batch 32 --max-delay-ms 5``), one with
``--max-batch 1``; ``--clients`` threads each send ``--requests`` one-image v2 infer
requests (binary tensors, as tritonclient sends them). Then one client sends requests one
after another to the batching server, and the same image goes through a bare
``InferenceSession.run`` with the same thread count. Last, the ceiling of the ratio on this
machine: images/s of that bare session at batch ``--clients`` over batch 1 (a server cannot
gain more from batching than onnxruntime itself does; on a 2-core CPU it is ~1.2×).

``--device cuda`` (what `gpu_check.py` runs when a GPU is lent): both servers and the bare
session on onnxruntime's CUDA provider.

`main()` returns the shared bench record: ours = requests/s with dynamic batching, baseline
= requests/s with ``--max-batch 1``, target ratio ≥ 2; ``overhead_p50_ms`` (one client,
server p50 − bare p50, goal ≤ 2) is reported alongside and part of ``ok``.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import result  # noqa: E402


def trained_model(workdir: Path, backbone: str, image_size: int) -> Path:
    from tl.core.progress import ProgressReporter
    from tl.core.registry import load_plugin
    from tl.core.run import run_plugin
    from tl_medical.demo import write_dataset

    data = write_dataset(workdir / "scans", {"normal": 8, "nodule": 8}, seed=0, image_size=64)
    options = {"data": str(data), "weights": "none", "epochs": 1, "device": "cpu",
               "backbone": backbone, "image_size": image_size, "batch_size": 8,
               "out": str(workdir / "runs")}  # fmt: skip
    return Path(run_plugin(load_plugin("medical"), options, ProgressReporter(stream=io.StringIO())))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, model: str, threads: int, *flags: str) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "tl.cli", "serve", model, "--port", str(self.port),
                   "--threads", str(threads), "--no-access-log", *flags]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/v1/models")
                self.name = json.loads(conn.getresponse().read())["models"][0]["name"]
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(self.process.stderr.read().decode()[-2000:]) from None
                time.sleep(0.2)
        raise RuntimeError("the server did not start")

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


def infer_body(image: np.ndarray) -> tuple[bytes, dict[str, str]]:
    inputs = [{"name": "image", "datatype": "UINT8", "shape": list(image.shape),
               "parameters": {"binary_data_size": image.nbytes}}]  # fmt: skip
    header = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode()
    return header + image.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


class Client:
    """One keep-alive connection sending one-image requests."""

    def __init__(self, server: Server, image: np.ndarray) -> None:
        self.body, self.headers = infer_body(image)
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        self.path = f"/v2/models/{server.name}/infer"

    def infer(self) -> float:
        start = time.perf_counter()
        self.conn.request("POST", self.path, body=self.body, headers=self.headers)
        response = self.conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
        return time.perf_counter() - start


def client_latencies(server: Server, image: np.ndarray, requests: int) -> list[float]:
    client = Client(server, image)
    times = [client.infer() for _ in range(requests)]
    client.conn.close()
    return times


def throughput(server: Server, image: np.ndarray, clients: int, requests: int) -> float:
    client_latencies(server, image, 5)  # warm-up
    threads = [
        threading.Thread(target=client_latencies, args=(server, image, requests))
        for _ in range(clients)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return clients * requests / (time.perf_counter() - start)


def bare_batching_gain(
    model_path: str, image: np.ndarray, threads: int, batch: int, device: str = "cpu"
) -> dict[str, float]:
    """Images/s of a bare session at batch 1 and at ``batch``: what batching gains without
    a server."""
    session = bare_session(model_path, threads, device)
    rates = {}
    for size in (1, batch):
        feeds = {"image": np.repeat(image, size, axis=0)}
        for _ in range(3):
            session.run(None, feeds)
        runs, start = 0, time.perf_counter()
        while runs < 8 or time.perf_counter() - start < 3.0:
            session.run(None, feeds)
            runs += 1
        rates[size] = runs * size / (time.perf_counter() - start)
    return {"batch_1": rates[1], f"batch_{batch}": rates[batch], "gain": rates[batch] / rates[1]}


def bare_session(model_path: str, threads: int, device: str = "cpu") -> Any:
    import onnxruntime as ort
    from tl.core.runtime import resolve_model_path

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(resolve_model_path(model_path)), options, providers=providers)


def paired_latencies(
    server: Server, model_path: str, image: np.ndarray, threads: int, n: int, device: str = "cpu"
) -> tuple[list[float], list[float], dict[str, float]]:
    """One client: a request to the server, then the same image through a bare
    ``InferenceSession.run`` (same thread count), alternately — both see the same machine
    load (this one is shared). Also the mean CPU ms per request of the server process, of
    this client, and of the bare run."""
    session = bare_session(model_path, threads, device)
    for _ in range(10):
        session.run(None, {"image": image})
    client = Client(server, image)
    for _ in range(10):
        client.infer()
    served, bare, cpu = [], [], {"server": 0.0, "client": 0.0, "bare": 0.0}
    for _ in range(n):
        before, mine = process_cpu(server.process.pid), time.process_time()
        served.append(client.infer())
        cpu["client"] += time.process_time() - mine
        cpu["server"] += process_cpu(server.process.pid) - before
        start, mine = time.perf_counter(), time.process_time()
        session.run(None, {"image": image})
        bare.append(time.perf_counter() - start)
        cpu["bare"] += time.process_time() - mine
    client.conn.close()
    return served, bare, {k: v / n * 1000 for k, v in cpu.items()}


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far (Linux /proc; 0 elsewhere):
    unlike wall time, not inflated by waiting for a core on a shared machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from tl.core.runtime import load_onnx_model

    spec = load_onnx_model(args.model, device="cpu").meta["input"]
    shape = (1, int(spec["channels"]), int(spec["height"]), int(spec["width"]))
    image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    flags = ["--device", args.device, "--max-delay-ms", str(args.max_delay_ms)]
    batching = Server(args.model, args.threads, "--max-batch", "32", *flags)
    try:
        batched = throughput(batching, image, args.clients, args.requests)
        served, bare, cpu = paired_latencies(
            batching, args.model, image, args.threads, args.single, args.device
        )
    finally:
        batching.close()
    single = Server(args.model, args.threads, "--max-batch", "1", *flags)
    try:
        unbatched = throughput(single, image, args.clients, args.requests)
    finally:
        single.close()
    ceiling = bare_batching_gain(args.model, image, args.threads, args.clients, args.device)
    served_p50, bare_p50 = (float(np.percentile(t, 50)) * 1000 for t in (served, bare))
    overhead = served_p50 - bare_p50
    ratio = batched / unbatched
    details = {
        "model": str(args.model),
        "device": args.device,
        "input": list(shape),
        "threads": args.threads,
        "clients": args.clients,
        "requests_per_client": args.requests,
        "requests_per_s": {"dynamic_batching": round(batched, 1), "max_batch_1": round(unbatched, 1)},
        "bare_session_images_per_s": {k: round(v, 1) for k, v in ceiling.items() if k != "gain"},
        "bare_batching_gain": round(ceiling["gain"], 3),
        "ratio_over_bare_gain": round(ratio / ceiling["gain"], 3),
        "one_client_p50_ms": {"server": round(served_p50, 3), "bare_session_run": round(bare_p50, 3)},
        "one_client_p99_ms": round(float(np.percentile(served, 99)) * 1000, 3),
        "one_client_paired_difference_p50_ms": round(
            float(np.median(np.subtract(served, bare))) * 1000, 3
        ),
        "one_client_cpu_ms_per_request": {k: round(v, 3) for k, v in cpu.items()},
        "cpu_overhead_ms": round(cpu["server"] + cpu["client"] - cpu["bare"], 3),
    }  # fmt: skip
    print(json.dumps(details, indent=2), file=sys.stderr)
    return result(
        "serve",
        batched,
        unbatched,
        ratio,
        ">= 2 (req/s batching / max-batch 1); overhead p50 <= 2 ms",
        ratio >= 2 and overhead <= 2.0,
        unit="req/s",
        overhead_p50_ms=round(overhead, 3),
        bare_batching_gain=round(ceiling["gain"], 3),
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--single", type=int, default=300, help="one-client requests")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-delay-ms", type=float, default=5.0)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    if args.model:
        return measure(args)
    with tempfile.TemporaryDirectory() as tmp:
        args.model = str(trained_model(Path(tmp), args.backbone, args.image_size))
        return measure(args)


if __name__ == "__main__":
    record = main()
    sys.exit(0 if record["ok"] else 1)
