#!/usr/bin/env bash
# Prepare a trained student artifact for the rig PC. Run it ON the rig: a TensorRT engine is tied
# to the GPU model and TensorRT version it was built with.
#
#   deploy/export_for_rig.sh ARTIFACT_DIR [--fp16 | --int8-read-in]
#
# 1. exports the step graph to ONNX (checked with onnx.checker, its ops checked against TensorRT's
#    parser, its frames compared with torch through ONNX Runtime);
# 2. where TensorRT and a CUDA GPU exist, builds the engine too (static batch-1 shapes, timing
#    cache, CUDA-graph capture at run time; --fp16 a half-precision one); else the rig uses ONNX
#    Runtime on the CPU (--int8-read-in: int8 read-in weights, a quarter of the bytes per tick);
# 3. loads the result exactly as `stream-decoder serve` will, warms it up, times 500 ticks;
# 4. prints the [model] lines for /etc/stream-decoder/rig.toml (fp16 or int8_read_in as chosen).
set -euo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
    sed -n '2,14p' "$0"
    exit 2
fi
artifact=$(realpath "$1")
shift
[[ -f "$artifact/meta.json" ]] || { echo "error: $artifact is not a student artifact (no meta.json)" >&2; exit 2; }

options=""
if python -c "import tensorrt" 2>/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    backend=tensorrt
    for arg in "$@"; do
        case $arg in
            --fp16) options="fp16 = true" ;;
            --int8-read-in) echo "error: --int8-read-in is for ONNX Runtime on a CPU rig; TensorRT takes --fp16" >&2; exit 2 ;;
        esac
    done
    stream-decoder export "$artifact" --tensorrt "$@"
else
    backend=onnxruntime
    echo "no TensorRT or no GPU here: exporting ONNX for the onnxruntime backend (CPU)"
    for arg in "$@"; do
        case $arg in
            --int8-read-in) options="int8_read_in = true" ;;
            --fp16) echo "error: --fp16 builds a TensorRT engine, which needs TensorRT and a CUDA GPU; on a CPU rig use --int8-read-in" >&2; exit 2 ;;
        esac
    done
    stream-decoder export "$artifact" "$@"
fi

python - "$artifact" "$backend" "$options" <<'PY'
import sys, time
import tomllib
import numpy as np
from stream_decoder.runtime import open_backend

artifact, kind, options = sys.argv[1], sys.argv[2], tomllib.loads(sys.argv[3])
backend = open_backend(artifact, kind, **options)
backend.warmup()
info = backend.info
activity = np.random.default_rng(0).random((16, info["neurons"]), dtype=np.float32)
behavior = np.zeros(4, np.float32)
times = []
for i in range(500):
    start = time.perf_counter()
    backend.step(activity[i % 16], behavior)
    times.append(time.perf_counter() - start)
p50, p99 = np.percentile(times, [50, 99]) * 1e3
print(f"{kind}: model {info['model']}, {info['neurons']} neurons, lookahead {info['lookahead']} ticks; "
      f"step p50 {p50:.3f} ms, p99 {p99:.3f} ms")
PY

cat <<TOML

Put this in /etc/stream-decoder/rig.toml, then: sudo systemctl restart stream-decoder
[model]
artifact = "$artifact"
backend = "$backend"

[model.options]
$options
TOML
