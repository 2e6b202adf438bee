# Sourced by the device scripts (benchmarks/device_run.sh, scripts/device_train.sh) on a GPU
# node with JAX but no Keras: installs the carried wheels (.whl, from scripts/device_wheels.sh)
# into /tmp/site unless Keras, gemmi and mrcfile import already, selects the JAX backend and
# the carried data cache (unpacking what device_wheels.sh gzipped), and prints what the node
# has.
export PYTHONUNBUFFERED=1 KERAS_BACKEND=jax CRYOEM_DENOISE_DATA=$PWD/.device-data
for f in "$CRYOEM_DENOISE_DATA"/*.gz; do [ -e "$f" ] && gunzip -f "$f"; done
if ! python3 -c "import keras, gemmi, mrcfile" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
