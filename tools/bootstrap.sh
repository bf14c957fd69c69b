#!/usr/bin/env bash
# Make a fresh Debian 12 machine ready: QGIS from Debian (when root and missing),
# then the project venv on the system Python so PyQGIS and GDAL import in it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

if ! /usr/bin/python3 -c "import qgis.core, osgeo.gdal" 2>/dev/null || [ ! -x /usr/bin/qgis_process.bin ]; then
    if [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        apt-get install -y --no-install-recommends qgis python3-qgis qgis-providers python3-venv python3-pip xauth xvfb \
            poppler-utils
    else
        echo "QGIS 3.22 is missing: run as root, or: sudo apt-get install qgis python3-qgis qgis-providers python3-venv xvfb" >&2
        exit 1
    fi
fi
# Xvfb: the virtual display tests/test_gui.py runs the QGIS desktop on.
if ! command -v xvfb-run >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends xvfb xauth \
            || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends xvfb xauth; }
    else
        echo "bootstrap: xvfb is missing (sudo apt-get install xvfb); the desktop test (tests/test_gui.py) will be skipped" >&2
    fi
fi

# poppler-utils: the field map tests read the PDFs back (pdfinfo, pdftotext, pdftoppm).
if ! command -v pdftotext >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends poppler-utils \
            || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends poppler-utils; }
    else
        echo "poppler-utils is missing (the field map tests skip without it): sudo apt-get install poppler-utils" >&2
    fi
fi

# rasterio: the training data layer; Debian's package runs on the same GDAL as the plugin's bindings.
if ! /usr/bin/python3 -c "import rasterio" 2>/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-rasterio \
            || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-rasterio; }
    else
        echo "rasterio is missing (training data layer): sudo apt-get install python3-rasterio" >&2
        exit 1
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r requirements-dev.txt
touch "$VENV/.bootstrapped"
