#!/usr/bin/env bash
# `make deploy` (development): install this folder as the QGIS plugin `sar_lulc` (a symlink, so
# edits take effect on the next QGIS start), enable it, and install onnxruntime for QGIS's Python
# into the profile's python/dependencies/sar_lulc/pythonX.Y/ folder (what the plugin's
# "Install dependencies" dialog does; see dependencies.py).
# Afterwards `qgis_process.bin run sarlulc:segment -- INPUT=... OUTPUT=...` works.
#   QGIS_CUSTOM_CONFIG_PATH=DIR  deploy into DIR/profiles/default instead of the user's profile
#                                (QGIS and qgis_process read the same variable)
#   DEPLOY_GPU=1                 install onnxruntime-gpu instead of onnxruntime
#   DEPLOY_REINSTALL=1           run pip even when the profile already has a working onnxruntime
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PYTHON=/usr/bin/python3          # the Python QGIS runs plugins in
QGIS_PROCESS=/usr/bin/qgis_process.bin
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
PROFILE=${QGIS_CUSTOM_CONFIG_PATH:-$HOME/.local/share/QGIS/QGIS3}/profiles/default
TARGET=$PROFILE/python/plugins/sar_lulc

mkdir -p "$PROFILE/python/plugins"
if [ -e "$TARGET" ] && [ ! -L "$TARGET" ]; then
    echo "deploy: $TARGET is a real folder (installed from a ZIP?). Remove or uninstall it in QGIS first." >&2
    exit 1
fi
ln -sfn "$REPO" "$TARGET"
echo "deploy: $TARGET -> $REPO"

DEPENDENCIES=$("$PYTHON" -c "import sys; print('$PROFILE/python/dependencies/sar_lulc/python%d.%d' % sys.version_info[:2])")
if [ "${DEPLOY_REINSTALL:-0}" != 1 ] \
        && "$PYTHON" -c "import sys; sys.path.insert(0, '$DEPENDENCIES'); import onnxruntime" 2>/dev/null; then
    echo "deploy: $DEPENDENCIES already has a working onnxruntime (DEPLOY_REINSTALL=1 to reinstall)"
else
    "$PYTHON" dependencies.py --profile "$PROFILE" $([ "${DEPLOY_GPU:-0}" = 1 ] && echo --gpu)
fi
if [ -d ext-libs ]; then
    echo "deploy: ext-libs/ in this folder is no longer used (dependencies live in the profile); you may delete it"
fi

# Exits non-zero when the plugin is already enabled; the listing below is the real check.
"$QGIS_PROCESS" plugins enable sar_lulc >/dev/null 2>&1 || true
if ! "$QGIS_PROCESS" list 2>/dev/null | grep -q "sarlulc:segment"; then
    echo "deploy: qgis_process does not list sarlulc:segment; run '$QGIS_PROCESS plugins' to see why." >&2
    exit 1
fi
echo "deploy: enabled in $PROFILE/QGIS/QGIS3.ini; qgis_process lists sarlulc:segment and sarlulc:waterdetect"
