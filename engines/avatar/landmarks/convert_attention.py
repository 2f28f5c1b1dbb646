"""One-time conversion of mediapipe's attention face mesh (FaceMesh(refine_landmarks=True)) to ONNX.

``face_landmark/face_landmark_with_attention.tflite`` (478 points: the 468-point mesh plus refined
lips, eyes and irises) contains three mediapipe custom ops that neither tf2onnx nor onnxruntime
know: ``Landmarks2TransformMatrix`` (v2), ``TransformTensorBilinear`` (v2) and
``TransformLandmarks`` (v2). This script converts the model with tf2onnx, leaving those ops as
custom-domain nodes, and cuts the graph at them into two standard ONNX models that onnxruntime
runs; ``attention.py`` runs the custom ops in numpy between them:

* ``backbone.onnx``: ``input_1`` [1, 192, 192, 3] -> ``mesh`` [1, 1, 1, 1404] (468 x (x, y, z),
  px of the 192 input), ``face_flag`` [1, 1, 1, 1] (presence logit), ``features`` [1, 48, 48, 32]
  (NHWC, the feature map the attention crops sample).
* ``heads.onnx``: ``lips_crop``, ``left_eye_crop``, ``right_eye_crop`` [1, 16, 16, 32] (the
  features resampled around each region) -> ``lips`` [1, 80, 2], ``left_eye`` [1, 71, 2],
  ``left_iris`` [1, 5, 2], ``right_eye`` [1, 71, 2], ``right_iris`` [1, 5, 2] in the crop's frame
  (before ``TransformLandmarks``).
* ``ops.json``: the custom ops' options (read from the flatbuffer) and the constants of the two
  ``MUL`` nodes that connect them (landmarks x0.25 into the 48-px feature frame; the matrix
  multiplier taking the crop frame back to 192 px).

Same recipe as ``convert.py`` (whose helpers it imports): opset 17, float16-exact weights stored
float16 + Cast, PRelu decomposed, canonical names, metadata. Run in the side environment::

    /work/side/tfenv/bin/python engines/avatar/landmarks/convert_attention.py \\
        --mediapipe-dir .venv/lib/python3.11/site-packages/mediapipe/modules \\
        --out engines/avatar/landmarks/assets/attention

Verification: each ONNX part against ``tf.lite.Interpreter`` running the same part of the
original flatbuffer (the model cut at the same tensors, custom ops removed), 5 random inputs;
fails when an output differs by >= 1e-3 of its scale. (The whole model cannot run in
tf.lite.Interpreter: the custom ops are not registered in TensorFlow's Python package.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import convert as base  # the 468-model converter: shared helpers, no vlogger imports

SOURCE = "face_landmark/face_landmark_with_attention.tflite"
DOMAIN = "com.mediapipe"
CUSTOM = ("TransformTensorBilinear", "TransformLandmarks", "Landmarks2TransformMatrix")
RECIPE = base.RECIPE.replace("; v1", "; split at mediapipe custom ops; attention v1")
REGIONS = ("lips", "left_eye", "right_eye")
# TransformLandmarks inputs, in TFLite tensor names -> ONNX names, and the region whose matrix they use
HEAD_OUTPUTS = {
    "reshape_1": ("lips", "lips"),
    "reshape_3": ("left_eye", "left_eye"),
    "reshape_4": ("left_iris", "left_eye"),
    "reshape_6": ("right_eye", "right_eye"),
    "reshape_7": ("right_iris", "right_eye"),
}
HEAD_SIZES = {"lips": 80, "left_eye": 71, "left_iris": 5, "right_eye": 71, "right_iris": 5}
N_RANDOM = 5
REL_TOL = 1e-3


def log(msg: str) -> None:
    print(msg, flush=True)


def rename_tensor(model, old: str, new: str) -> None:
    g = model.graph
    for n in g.node:
        n.input[:] = [new if x == old else x for x in n.input]
        n.output[:] = [new if x == old else x for x in n.output]
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.name == old:
            vi.name = new


def tflite_custom_ops(src: Path) -> list[dict]:
    """The custom op nodes of the flatbuffer: name, inputs, outputs (tensor names), options."""
    from flatbuffers import flexbuffers
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(src))
    sg = model.subgraphs[0]
    out = []
    for k, op in enumerate(sg.operators):
        code = model.operatorCodes[op.opcodeIndex]
        if code.customCode is None:
            continue
        opts = flexbuffers.Loads(bytes(op.customOptions)) if op.customOptions is not None else {}
        out.append(
            {
                "index": k,
                "op": code.customCode.decode(),
                "version": int(code.version),
                "inputs": [sg.tensors[i].name.decode() for i in op.inputs],
                "outputs": [sg.tensors[i].name.decode() for i in op.outputs],
                "options": opts,
            }
        )
    return out


def tflite_part(src: Path, dst: Path, inputs: list[str], outputs: list[str]) -> None:
    """``src`` cut to the ops between tensors ``inputs`` and ``outputs`` (for the reference run)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(src))
    sg = model.subgraphs[0]
    idx = {t.name.decode(): i for i, t in enumerate(sg.tensors)}
    producer = {o: k for k, op in enumerate(sg.operators) for o in op.outputs}
    stop = {idx[n] for n in inputs}
    keep, stack = set(), [idx[n] for n in outputs]
    while stack:
        t = stack.pop()
        if t in stop or t not in producer or producer[t] in keep:
            continue
        keep.add(producer[t])
        stack.extend(i for i in sg.operators[producer[t]].inputs if i >= 0)
    sg.operators = [op for k, op in enumerate(sg.operators) if k in keep]
    sg.inputs = np.array([idx[n] for n in inputs], dtype=np.int32)
    sg.outputs = np.array([idx[n] for n in outputs], dtype=np.int32)
    flatbuffer_utils.write_model(model, str(dst))


def initializer_value(model, name: str) -> np.ndarray:
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    raise KeyError(name)


def finish(model, part: str, src_sha: str, dst: Path) -> None:
    import onnx
    import tf2onnx

    n16, kept = base.store_fp16_weights(model)
    n_prelu = base.decompose_prelu(model)
    base.canonicalize(model)
    log(f"    {part}: {n16} weights float16, {kept} float32 values kept, {n_prelu} PRelu rewritten")
    model.doc_string = f"{SOURCE} ({part}) from {base.ORIGIN}; converted by convert_attention.py"
    model.graph.doc_string = ""
    del model.metadata_props[:]
    for k, v in [
        ("source", SOURCE),
        ("source_sha256", src_sha),
        ("source_package", base.SOURCE_PACKAGE),
        ("part", part),
        ("origin", base.ORIGIN),
        ("license", "Apache-2.0"),
        ("conversion", RECIPE),
        ("converter", f"tf2onnx {tf2onnx.__version__}, onnx {onnx.__version__}"),
    ]:
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    tmp = dst.with_suffix(".onnx.tmp")
    tmp.write_bytes(model.SerializeToString(deterministic=True))
    os.replace(tmp, dst)


def convert(src: Path, out: Path) -> dict:
    import onnx
    import tf2onnx
    from onnx import TensorProto, helper

    src_sha = base.sha256_file(src)
    customs = tflite_custom_ops(src)
    tf2onnx.utils.INTERNAL_NAME = 1
    model, _ = tf2onnx.convert.from_tflite(
        str(src), opset=base.OPSET, custom_ops={"TFL_" + o: DOMAIN for o in CUSTOM}
    )
    g = model.graph
    nodes = {o: n for n in g.node for o in n.output}
    custom_nodes = [n for n in g.node if n.domain == DOMAIN]
    assert len(custom_nodes) == 11, [n.op_type for n in custom_nodes]

    # TFLite side: which region each matrix / crop belongs to (by the rotation landmarks).
    region_of = {61: "lips", 33: "left_eye", 362: "right_eye"}
    l2tm = {c["outputs"][0]: c for c in customs if c["op"] == "Landmarks2TransformMatrix"}
    bilinear = {c["outputs"][0]: c for c in customs if c["op"] == "TransformTensorBilinear"}
    regions: dict[str, dict] = {}
    for name, c in l2tm.items():
        assert c["version"] == 2, c
        regions[region_of[c["options"]["left_rotation_idx"]]] = {"matrix_tensor": name, **c["options"]}
    features_tflite = {c["inputs"][0] for c in bilinear.values()}
    assert len(features_tflite) == 1
    for name, c in bilinear.items():
        assert c["version"] == 2 and c["inputs"][1] in l2tm
        reg = region_of[l2tm[c["inputs"][1]]["options"]["left_rotation_idx"]]
        regions[reg]["crop_tensor"] = name
        regions[reg]["crop_size"] = [c["options"]["output_height"], c["options"]["output_width"]]

    # ONNX side: the tensors at the cut.
    l2tm_onnx = [n for n in custom_nodes if n.op_type == "TFL_Landmarks2TransformMatrix"]
    (scaled,) = {n.input[0] for n in l2tm_onnx}  # mesh * 0.25 (tf2onnx merged the three MULs)
    mul = nodes[scaled]
    assert mul.op_type == "Mul"
    mesh_scale = float(initializer_value(model, mul.input[1]).reshape(-1)[0])
    tl_onnx = [n for n in custom_nodes if n.op_type == "TFL_TransformLandmarks"]
    multipliers = {tuple(initializer_value(model, nodes[n.input[1]].input[1]).reshape(-1)) for n in tl_onnx}
    assert len(multipliers) == 1, multipliers
    matrix_multiplier = np.array(next(iter(multipliers)), dtype=np.float32).reshape(4, 4)
    tt_onnx = [n for n in custom_nodes if n.op_type == "TFL_TransformTensorBilinear"]
    (features_onnx,) = {n.input[0] for n in tt_onnx}
    assert nodes[features_onnx].op_type == "Transpose"  # NCHW -> NHWC of p_re_lu_3
    for n in tl_onnx:
        assert n.input[0] in HEAD_OUTPUTS, n.input

    def vi(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    g.value_info.extend(
        [vi(features_onnx, [1, 48, 48, 32])]
        + [vi(r["crop_tensor"], [1, *r["crop_size"], 32]) for r in regions.values()]
        + [vi(k, [1, HEAD_SIZES[v[0]], 2]) for k, v in HEAD_OUTPUTS.items()]
    )
    if not any(o.domain == DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    ext = onnx.utils.Extractor(model)
    backbone = ext.extract_model(["input_1"], ["output_mesh_identity", "conv_faceflag", features_onnx])
    heads = ext.extract_model([regions[r]["crop_tensor"] for r in REGIONS], [k for k in HEAD_OUTPUTS])
    for m in (backbone, heads):
        assert not any(n.domain == DOMAIN for n in m.graph.node)
        keep = [o for o in m.opset_import if o.domain != DOMAIN]
        del m.opset_import[:]
        m.opset_import.extend(keep)
    assert [i.name for i in heads.graph.input] == [regions[r]["crop_tensor"] for r in REGIONS]
    for old, new in (
        ("output_mesh_identity", "mesh"),
        ("conv_faceflag", "face_flag"),
        (features_onnx, "features"),
    ):
        rename_tensor(backbone, old, new)
    for r in REGIONS:
        rename_tensor(heads, regions[r]["crop_tensor"], f"{r}_crop")
    for old, (new, _) in HEAD_OUTPUTS.items():
        rename_tensor(heads, old, new)
    out.mkdir(parents=True, exist_ok=True)
    finish(backbone, "backbone", src_sha, out / "backbone.onnx")
    finish(heads, "heads", src_sha, out / "heads.onnx")

    ops = {
        "source": SOURCE,
        "source_sha256": src_sha,
        "origin": base.ORIGIN,
        "note": "options of the custom ops of the source model and the constants around them; "
        "written by convert_attention.py",
        "mesh_scale": mesh_scale,
        "matrix_multiplier": matrix_multiplier.tolist(),
        "regions": {
            r: {
                k: regions[r][k]
                for k in (
                    "subset_idxs",
                    "left_rotation_idx",
                    "right_rotation_idx",
                    "target_rotation_radians",
                    "output_width",
                    "output_height",
                    "scale_x",
                    "scale_y",
                )
            }
            for r in REGIONS
        },
        "heads": {new: region for new, region in HEAD_OUTPUTS.values()},
        "custom_ops": [{k: c[k] for k in ("op", "version", "inputs", "outputs", "options")} for c in customs],
    }
    (out / "ops.json").write_text(json.dumps(ops, indent=1) + "\n")
    return {"features": next(iter(features_tflite)), "regions": regions}


def verify(src: Path, out: Path, cut: dict) -> bool:
    """Each ONNX part vs tf.lite.Interpreter on the same part of the source flatbuffer."""
    import onnxruntime as ort
    import tensorflow as tf

    regions = cut["regions"]
    parts = {
        "backbone.onnx": (
            ["input_1"],
            ["output_mesh_identity", "conv_faceflag", cut["features"]],
            ["mesh", "face_flag", "features"],
        ),
        "heads.onnx": (
            [regions[r]["crop_tensor"] for r in REGIONS],
            list(HEAD_OUTPUTS),
            [v[0] for v in HEAD_OUTPUTS.values()],
        ),
    }
    ok = True
    rng = np.random.default_rng(0)
    log(
        "\nparity, tf.lite.Interpreter (the same part of the source .tflite) vs onnxruntime, "
        f"{N_RANDOM} random inputs (uniform [-1, 1]; features: |N(0, 1)|)"
    )
    log("| part | output | scale | max abs diff | relative |")
    log("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for fname, (tin, tout, onames) in parts.items():
            tfl = Path(tmp) / fname.replace(".onnx", ".tflite")
            tflite_part(src, tfl, tin, tout)
            it = tf.lite.Interpreter(model_path=str(tfl), num_threads=1)
            it.allocate_tensors()
            ind = {d["name"]: d for d in it.get_input_details()}
            outd = {d["name"]: d for d in it.get_output_details()}
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            sess = ort.InferenceSession(str(out / fname), so, providers=["CPUExecutionProvider"])
            onnx_in = [i.name for i in sess.get_inputs()]
            stats = {n: [0.0, 0.0] for n in onames}
            for _ in range(N_RANDOM):
                xs = []
                for n in tin:
                    shape = [int(s) for s in ind[n]["shape"]]
                    if n == "input_1":
                        xs.append(rng.uniform(-1, 1, shape).astype(np.float32))
                    else:
                        xs.append(np.abs(rng.normal(0, 1, shape)).astype(np.float32))
                for n, x in zip(tin, xs, strict=True):
                    it.set_tensor(ind[n]["index"], x)
                it.invoke()
                got = dict(
                    zip(
                        [o.name for o in sess.get_outputs()],
                        sess.run(None, dict(zip(onnx_in, xs, strict=True))),
                        strict=True,
                    )
                )
                for tn, on in zip(tout, onames, strict=True):
                    ref = it.get_tensor(outd[tn]["index"])
                    g = got[on].reshape(ref.shape)
                    stats[on][0] = max(stats[on][0], float(np.abs(ref).max()))
                    stats[on][1] = max(stats[on][1], float(np.abs(g.astype(np.float64) - ref).max()))
            for on, (scale, diff) in stats.items():
                rel = diff / max(scale, 1e-6)
                ok &= rel < REL_TOL
                log(f"| {fname} | {on} | {scale:.4g} | {diff:.3g} | {rel:.2e} |")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mediapipe-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "assets" / "attention")
    ap.add_argument("--no-verify", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    src = args.mediapipe_dir / SOURCE
    cut = convert(src, args.out)
    total = 0
    for f in sorted(args.out.iterdir()):
        total += f.stat().st_size
        log(f"    {f.name}: {f.stat().st_size} bytes, sha256 {base.sha256_file(f)}")
    log(f"total {total / 1e6:.2f} MB (source {src.stat().st_size / 1e6:.2f} MB)")
    if not args.no_verify and not verify(src, args.out, cut):
        log(f"\nFAILED: some outputs differ by >= {REL_TOL} of their scale")
        return 1
    return 0


if __name__ == "__main__":
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    sys.exit(main())
