"""Load test of the prediction server: concurrent clients, injected stragglers, a killed worker.

For each backend (local threads, Ray actors) the program serves the model on 127.0.0.1 in this
process, drives it from a separate client process with ``--clients`` concurrent connections
until ``--requests`` single-input requests are completed or ``--time-cap`` seconds pass, and kills
one worker once half of the requests are completed. Then it checks every response:

- lost: requests sent without an HTTP 200 response (errors, timeouts, dropped connections);
- mismatched: responses that differ from an offline recomputation of their coded call. Each
  response names its call (``batch_ids``) and its row in it (``batch_offsets``); the program
  rebuilds each call from the inputs that the clients sent, encodes it, runs the model on the
  coded queries of the workers that answered, decodes, and compares row by row. A response sent
  to the wrong request, or decoded from the wrong inputs, fails this check.

A killed local worker cannot be stopped from outside its thread, so from the kill on it fails
every call, as a crashed process would. A killed Ray actor's process is really killed, and Ray
restarts it.

    python benchmarks/load_test.py --backend local --backend ray

Writes JSON and a Markdown page to ``--output-dir`` (load_test.json, load_test.md).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import glob
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from approxifer_onnx.data import load_dataset
from approxifer_onnx.faults import FaultPlan
from approxifer_onnx.model import OnnxModel
from approxifer_onnx.serving import ServeConfig, ServerThread
from approxifer_onnx.session import CodedInferenceSession

BACKENDS = ("local", "ray")

# The --model value that builds a seeded MLP with random weights, for runs without a trained model.
STAND_IN = "stand-in"

# Relative and absolute tolerance between a served response (float32 on the wire) and its offline
# recomputation in float64. A mixed-up response differs by the distance between two inputs' logits.
MATCH_TOLERANCE = 1e-4


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=_default_model(),
                        help="ONNX classifier, or 'stand-in' for a seeded MLP with random weights for "
                             "the data's input shape [default: the first examples/fashion_mnist_*.onnx]")
    parser.add_argument("--data", type=Path, default=Path("examples/fashion_mnist_test_2000.npz"),
                        help="inputs, any format load_dataset reads")
    parser.add_argument("--backend", dest="backends", action="append", choices=BACKENDS,
                        help="backend to test; repeatable [default: both]")
    parser.add_argument("--requests", type=int, default=10_000, help="requests per backend")
    parser.add_argument("--clients", type=int, default=32, help="concurrent client connections")
    parser.add_argument("--time-cap", type=float, default=600.0,
                        help="seconds after which the clients send no new request, per backend")
    parser.add_argument("-k", type=int, default=8, help="queries per group K")
    parser.add_argument("--stragglers", type=int, default=2, help="stragglers S tolerated")
    parser.add_argument("--num-workers", type=int, default=None, help="workers N [default: K + S]")
    parser.add_argument("--faults", default="p=0.1;delay=exp:0.05",
                        help="injected straggler plan (FaultPlan text form)")
    parser.add_argument("--kill-worker", type=int, default=0,
                        help="worker killed once half of the requests are answered; -1 kills none")
    parser.add_argument("--max-queue-delay", type=float, default=0.005, help="seconds")
    parser.add_argument("--seed", type=int, default=0, help="seed of the faults and the request order")
    parser.add_argument("--output-dir", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--note", default=None, help="text added to the results, such as the machine's other load")
    args = parser.parse_args(argv)
    if args.model is None or (str(args.model) != STAND_IN and not args.model.exists()):
        parser.error(f"--model {args.model} does not exist; train the example model, pass --model PATH "
                     f"or --model {STAND_IN}")
    args.backends = args.backends or list(BACKENDS)
    return args


def _default_model() -> Path | None:
    candidates = sorted(glob.glob("examples/fashion_mnist_*.onnx"))
    return Path(candidates[0]) if candidates else None


# -- the client process --------------------------------------------------------------------------


def client_process(url, model_name, input_name, inputs, order, clients, time_cap, results):
    """Send one request per entry of `order` from `clients` connections; put the records in `results`."""
    records = asyncio.run(_drive(url, model_name, input_name, inputs, order, clients, time_cap))
    results.put(records)


async def _drive(url, model_name, input_name, inputs, order, clients, time_cap):
    import httpx

    endpoint = f"{url}/v2/models/{model_name}/infer"
    stop_at = time.monotonic() + time_cap
    records = []
    cursor = iter(range(len(order)))

    async def one_client(client):
        for number in cursor:  # the shared iterator hands each request number to one client
            if time.monotonic() > stop_at:
                return
            image = int(order[number])
            raw = inputs[image : image + 1].tobytes()
            header = json.dumps({
                "id": str(number),
                "inputs": [{"name": input_name, "shape": [1, *inputs.shape[1:]], "datatype": "FP32",
                            "parameters": {"binary_data_size": len(raw)}}],
            }).encode()
            started = time.perf_counter()
            try:
                response = await client.post(
                    endpoint, content=header + raw,
                    headers={"Inference-Header-Content-Length": str(len(header))},
                )
                status, document = response.status_code, response.json()
            except (httpx.HTTPError, ValueError) as error:
                status, document = 0, {"error": f"{type(error).__name__}: {error}"}
            seconds = time.perf_counter() - started
            records.append({"number": number, "image": image, "status": status, "seconds": seconds,
                            "document": document})

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=120.0) as client:
        await asyncio.gather(*(one_client(client) for _ in range(clients)))
    return records


# -- one backend ---------------------------------------------------------------------------------


def run_backend(backend_name, args, model, inputs, labels):
    plan = FaultPlan.parse(args.faults) if args.faults else None
    code = {"k": args.k, "stragglers": args.stragglers, "num_workers": args.num_workers, "timeout": 10.0}
    if backend_name == "ray":
        from approxifer_onnx.backends.ray import RayBackend, start_local_ray
        from approxifer_onnx.coding import BerrutCode

        start_local_ray(num_cpus=os.cpu_count())
        num_workers = BerrutCode(args.k, args.stragglers, num_workers=args.num_workers).num_workers
        backend = RayBackend(model, num_workers, faults=plan, rng=args.seed)
        session = CodedInferenceSession(model, **code, backend=backend)
    else:
        session = CodedInferenceSession(model, **code, faults=plan, rng=args.seed)

    order = np.random.default_rng(args.seed).integers(0, len(inputs), size=args.requests)
    config = ServeConfig(port=0, max_queue_delay=args.max_queue_delay, max_queue_size=4 * args.clients,
                         request_timeout=60.0, model_name="model")
    killed_after = None
    with session, ServerThread(session, config) as server:
        results = multiprocessing.get_context("spawn").Queue()
        client = multiprocessing.get_context("spawn").Process(
            target=client_process,
            args=(server.url, "model", session.get_inputs()[0].name, inputs, order, args.clients, args.time_cap,
                  results),
        )
        started = time.monotonic()
        client.start()
        registry = server.app.state.metrics.registry

        # Kill a worker once half of the requests are completed, then wait for the clients.
        while killed_after is None and client.is_alive() and args.kill_worker >= 0:
            answered = registry.get_sample_value("approxifer_requests_total", {"model": "model", "code": "200"}) or 0
            if answered >= args.requests // 2:
                kill_worker(session, backend_name, args.kill_worker, plan)
                killed_after = int(answered)
            time.sleep(0.01)
        records = results.get()
        wall = time.monotonic() - started
        client.join()
        stragglers = _straggler_counts(registry)
        summary = summarize(backend_name, args, session, records, inputs, labels, wall, killed_after, stragglers)
    if backend_name == "ray":
        import ray

        ray.shutdown()
    return summary


def kill_worker(session, backend_name, worker, plan):
    if backend_name == "ray":
        session.backend.kill_worker(worker, restart=True)
        return
    # A thread cannot be killed from outside; from now on the worker fails every call instead.
    dead = FaultPlan(fail=(worker,)) if plan is None else dataclasses.replace(plan, fail=(*plan.fail, worker))
    session.backend.faults = dead


def _straggler_counts(registry):
    counts = defaultdict(float)
    for metric in registry.collect():
        if metric.name == "approxifer_stragglers":
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["kind"]] += sample.value
    return {kind: int(value) for kind, value in counts.items()}


# -- checking and summarizing --------------------------------------------------------------------


def summarize(backend_name, args, session, records, inputs, labels, wall, killed_after, stragglers):
    answered = [record for record in records if record["status"] == 200]
    errors = defaultdict(int)
    for record in records:
        if record["status"] != 200:
            errors[str(record["status"])] += 1

    mismatched, unverified = verify_answers(session, answered, inputs)
    logits = np.array([record["document"]["outputs"][0]["data"] for record in answered])
    images = np.array([record["image"] for record in answered], dtype=np.int64)
    uncoded = session.model.predict(inputs[images])[0].argmax(axis=1) if len(images) else np.array([])
    coded = logits.argmax(axis=1) if len(images) else np.array([])
    latencies_ms = np.array([record["seconds"] for record in answered]) * 1000
    approximate = sum(record["document"]["parameters"]["coding"] == "approximate" for record in answered)

    summary = {
        "backend": backend_name,
        "requests_planned": args.requests,
        "requests_sent": len(records),
        "requests_answered": len(answered),
        "lost_requests": args.requests - len(answered),
        "errors_by_status": dict(errors),
        "mismatched_responses": mismatched,
        "unverified_responses": unverified,
        "approximate_responses": int(approximate),
        "agreement_with_uncoded": float((coded == uncoded).mean()) if len(images) else None,
        "accuracy_coded": float((coded == labels[images]).mean()) if labels is not None and len(images) else None,
        "accuracy_uncoded": float((uncoded == labels[images]).mean()) if labels is not None and len(images) else None,
        "latency_p50_ms": _percentile(latencies_ms, 50),
        "latency_p99_ms": _percentile(latencies_ms, 99),
        "latency_max_ms": float(latencies_ms.max()) if len(latencies_ms) else None,
        "throughput_qps": len(answered) / wall,
        "wall_time_s": wall,
        "killed_worker": args.kill_worker if killed_after is not None else None,
        "killed_after_answered": killed_after,
        "straggler_results": stragglers,
    }
    print(json.dumps(summary, indent=2), file=sys.stderr)
    return summary


def verify_answers(session, answered, inputs):
    """Recompute every coded call offline; return (mismatched responses, responses not verifiable)."""
    calls = defaultdict(list)
    for record in answered:
        parameters = record["document"]["parameters"]
        calls[int(parameters["batch_ids"])].append((int(parameters["batch_offsets"]), record))

    mismatched = unverified = 0
    for members in calls.values():
        members.sort(key=lambda member: member[0])
        offsets = [offset for offset, _ in members]
        if offsets != list(range(len(members))):
            unverified += len(members)  # a request of this call has no response, so the call cannot be rebuilt
            continue
        workers = [int(worker) for worker in members[0][1]["document"]["parameters"]["workers_answered"].split(",")]
        images = [record["image"] for _, record in members]
        expected = recompute_call(session, inputs[images], workers)
        for (offset, record) in members:
            served = np.asarray(record["document"]["outputs"][0]["data"])
            if not np.allclose(served, expected[offset], rtol=MATCH_TOLERANCE, atol=MATCH_TOLERANCE):
                mismatched += 1
    return mismatched, unverified


def recompute_call(session, queries, workers):
    """Decode the first output of one call of `queries` from the results of `workers` only."""
    k, n = session.k, session.num_workers
    groups = -(-len(queries) // k)
    padded = np.concatenate([queries, np.repeat(queries[-1:], groups * k - len(queries), axis=0)])
    coded = session.code.encode(padded.reshape(groups, k, *queries.shape[1:]).astype(np.float64))
    name = session.get_outputs()[0].name
    results = None
    for worker in workers:
        output = session.model.predict(coded[:, worker], [name])[0]
        if results is None:
            results = np.zeros((groups, n, *output.shape[1:]))
        results[:, worker] = output
    available = np.zeros(n, dtype=bool)
    available[workers] = True
    decoded = session.code.decode(results, available)
    return decoded.reshape(-1, *decoded.shape[2:])[: len(queries)]


def _percentile(values, q):
    return float(np.percentile(values, q)) if len(values) else None


def write_results(args, summaries, output_dir):
    output_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "model": f"{STAND_IN}: seeded MLP with random weights (seed {args.seed})" if str(args.model) == STAND_IN
        else str(args.model),
        "data": str(args.data),
        "requests": args.requests,
        "clients": args.clients,
        "time_cap_s": args.time_cap,
        "k": args.k,
        "stragglers": args.stragglers,
        "num_workers": args.num_workers or args.k + args.stragglers,
        "faults": args.faults,
        "max_queue_delay_s": args.max_queue_delay,
        "seed": args.seed,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "note": args.note,
        "results": summaries,
    }
    (output_dir / "load_test.json").write_text(json.dumps(document, indent=2) + "\n")

    lines = [
        "# Serving load test",
        "",
        f"Written by `benchmarks/load_test.py` on {platform.platform()} with {os.cpu_count()} CPUs.",
        f"Model `{document['model']}`, data `{args.data}`; {args.requests} single-input requests per backend from "
        f"{args.clients} concurrent clients on 127.0.0.1, time cap {args.time_cap:g} s.",
        f"Code K={args.k}, S={args.stragglers}, N={document['num_workers']}, wait first-k; injected faults "
        f"`{args.faults}`; worker {args.kill_worker} killed once half of the requests were answered; "
        f"seed {args.seed}.",
        *([f"Note: {args.note}"] if args.note else []),
        "",
        "| backend | answered | lost | mismatched | approximate | p50 ms | p99 ms | max ms | req/s | "
        "late + failed worker results | killed after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for summary in summaries:
        stragglers = summary["straggler_results"]
        lines.append(
            f"| {summary['backend']} | {summary['requests_answered']} | {summary['lost_requests']} | "
            f"{summary['mismatched_responses']} | {summary['approximate_responses']} | "
            f"{summary['latency_p50_ms']:.1f} | {summary['latency_p99_ms']:.1f} | {summary['latency_max_ms']:.1f} | "
            f"{summary['throughput_qps']:.0f} | {stragglers.get('late', 0)} + {stragglers.get('failed', 0)} | "
            f"{summary['killed_after_answered']} answers |"
        )
    (output_dir / "load_test.md").write_text("\n".join(lines) + "\n")


def write_stand_in_model(path, query_shape, num_classes=10, hidden=64, seed=0):
    """Write an MLP classifier with seeded random weights: Flatten, Gemm, Relu, Gemm.

    Its predictions are meaningless, but its cost and its outputs are deterministic, which is all
    the lost and mismatch checks and the latency need.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    features = int(np.prod(query_shape))
    weights = {
        "weight1": rng.normal(scale=features**-0.5, size=(features, hidden)).astype(np.float32),
        "bias1": np.zeros(hidden, dtype=np.float32),
        "weight2": rng.normal(scale=hidden**-0.5, size=(hidden, num_classes)).astype(np.float32),
        "bias2": np.zeros(num_classes, dtype=np.float32),
    }
    nodes = [
        helper.make_node("Flatten", ["x"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "weight1", "bias1"], ["hidden_linear"]),
        helper.make_node("Relu", ["hidden_linear"], ["hidden"]),
        helper.make_node("Gemm", ["hidden", "weight2", "bias2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "stand_in_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *query_shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.save(model, path)
    return Path(path)


def main(argv=None):
    args = parse_args(argv)
    dataset = load_dataset(args.data)
    inputs = np.ascontiguousarray(dataset.inputs, dtype=np.float32)
    with tempfile.TemporaryDirectory() as scratch:
        if str(args.model) == STAND_IN:
            # Rebuilt from the seed on every run, so it is not kept with the results.
            path = write_stand_in_model(Path(scratch) / "stand_in.onnx", inputs.shape[1:], seed=args.seed)
        else:
            path = args.model
        model = OnnxModel(path)
        summaries = [run_backend(name, args, model, inputs, dataset.labels) for name in args.backends]
    write_results(args, summaries, args.output_dir)

    failed = [s["backend"] for s in summaries if s["lost_requests"] or s["mismatched_responses"]]
    if failed:
        print(f"lost or mismatched responses on: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
