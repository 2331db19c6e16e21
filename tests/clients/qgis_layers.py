"""Opens each collection of a sitewatch server in headless QGIS, through
QGIS's own OGC API - Features provider and through GDAL's driver, renders the
sites to a PNG, and prints what it found as one JSON line for the test that
runs it to check.

Usage: python3 qgis_layers.py <landing page URL> <PNG path>
"""

import json
import os
import sys

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (  # noqa: E402
    NULL,
    QgsApplication,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QSize  # noqa: E402
from qgis.PyQt.QtGui import QColor  # noqa: E402

COLLECTIONS = ["sites", "observations", "candidates"]


def describe(layer):
    """What a layer holds: validity, count, geometry type, CRS and fields."""
    fields = {f.name(): f.typeName() for f in layer.fields()}
    features = list(layer.getFeatures())
    out = {
        "valid": layer.isValid(),
        "features": len(features),
        "geometry": QgsWkbTypes.displayString(
            QgsWkbTypes.flatType(QgsWkbTypes.singleType(layer.wkbType()))
        ),
        "crs": layer.crs().authid(),
        "fields": fields,
    }
    if "sources" in fields:
        out["with_sources"] = sum(1 for f in features if has_value(f["sources"]))
    return out


def has_value(value):
    """Whether an attribute holds something: not NULL, not empty."""
    if value is None or value == NULL:
        return False
    return str(value).strip() not in ("", "[]")


def render(layer, path):
    """Draws the layer over its extent and counts the colours in the picture."""
    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(800, 600))
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    image.save(path, "png")
    colours = set()
    for x in range(0, image.width(), 4):
        for y in range(0, image.height(), 4):
            colours.add(image.pixel(x, y))
    return {"colours": len(colours)}


def inspect(api, png):
    """The report of every collection through both routes, and the picture."""
    report = {"oapif": {}, "gdal": {}}
    layers = {}
    for name in COLLECTIONS:
        native = QgsVectorLayer(f"url='{api}' typename='{name}'", name, "OAPIF")
        report["oapif"][name] = describe(native)
        gdal = QgsVectorLayer(f"OAPIF:{api}|layername={name}", name, "ogr")
        report["gdal"][name] = describe(gdal)
        layers[name] = (native, gdal)
    report["render"] = render(layers["sites"][0], png)
    return report


def main():
    api, png = sys.argv[1], sys.argv[2]
    app = QgsApplication([], False)
    app.initQgis()
    # The layers live only inside inspect(): any left when QGIS shuts down
    # crash it on the way out.
    report = inspect(api, png)
    print(json.dumps(report), flush=True)
    app.exitQgis()


if __name__ == "__main__":
    main()
