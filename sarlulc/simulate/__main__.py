"""CLI: python -m sarlulc.simulate --out DIR --count N --size S --seed K [--units db|linear|dn]
[--variability realistic|none] ..."""

import argparse
import sys

from .generate import generate_set
from .geotiff import CRS_CHOICES, UNITS
from .variation import VARIABILITY
from ..errors import gdal_exceptions


@gdal_exceptions()
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sarlulc.simulate",
        description="Simulate ALOS-2-like HH scenes with 9-class labels as GeoTIFF pairs "
                    "<name>_sar.tif / <name>_label.tif plus manifest.json. Use different --seed values "
                    "for training and held-out sets: they never share a scene.")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--count", type=int, default=10, help="number of scenes (default 10)")
    parser.add_argument("--size", type=int, default=512, help="scene edge in 10 m pixels (default 512)")
    parser.add_argument("--seed", type=int, default=1, help="set seed; scene i uses (seed, i) (default 1)")
    parser.add_argument("--units", choices=UNITS, default="db",
                        help="SAR band units: db (float32), linear power (float32), dn (ALOS-2 uint16)")
    parser.add_argument("--crs", choices=CRS_CHOICES, default="EPSG:32654",
                        help="UTM 54N at 10 m, or EPSG:4326 with degree pixels of 10 m at the scene latitude")
    parser.add_argument("--variability", choices=VARIABILITY, default="realistic",
                        help="realistic (default): each scene draws its calibration offset, looks, resolution, "
                             "texture, incidence, wind, water fraction, flooding and class levels; "
                             "none: the fixed world of the demo scene")
    parser.add_argument("--looks", type=float, default=None,
                        help="speckle equivalent number of looks for every scene (default: drawn 1-16 per scene "
                             "with realistic variability, 4 with none)")
    parser.add_argument("--no-margin", action="store_true", help="no nodata swath margin")
    parser.add_argument("--holes", action="store_true", help="add small nodata holes")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    try:
        generate_set(args.out, args.count, args.size, args.seed, units=args.units, crs=args.crs, looks=args.looks,
                     nodata_margin=not args.no_margin, holes=args.holes, variability=args.variability)
    except ValueError as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
