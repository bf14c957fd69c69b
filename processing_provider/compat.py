"""QGIS API names that moved between QGIS 3.22 (the oldest version the plugin supports) and QGIS 4.

QGIS 3.22 has only the class enums (``WKB_POLYGON``, ``LAYOUT_MILLIMETERS``,
``SOURCE_VECTOR_POLYGON``...) and ``QgsField(name, QVariant.Type)``. Later 3.x releases moved
these to the scoped ``Qgis.*`` enums and ``QMetaType.Type`` and deprecated the old names; QGIS 4 (Qt 6)
has no ``QVariant.Type`` at all. Each name below is the new spelling where the running QGIS has it and
the 3.22 one otherwise, so the rest of the plugin writes one name for every version. Enums 3.22 already
has in their final form (``Qgis.MessageLevel``, class enums such as ``QgsFeatureSink.Flag``) are used
directly, scoped, and are not repeated here.
"""

from qgis.core import Qgis, QgsColorRampShader, QgsMapLayerType, QgsProcessing, QgsProcessingAlgorithm, \
    QgsProcessingParameterDefinition, QgsProcessingParameterFile, QgsProcessingParameterNumber, QgsUnitTypes, \
    QgsWkbTypes
from qgis.PyQt.QtCore import QMetaType, QVariant

# QgsField's type: QMetaType.Type from QGIS 3.38 (QVariant.Type deprecated there, gone with Qt 6);
# QGIS 3.22-3.36 take QVariant.Type only.
if Qgis.versionInt() >= 33800:
    FIELD_INT = QMetaType.Type.Int
    FIELD_INT64 = QMetaType.Type.LongLong
    FIELD_DOUBLE = QMetaType.Type.Double
    FIELD_STRING = QMetaType.Type.QString
else:
    FIELD_INT = QVariant.Int
    FIELD_INT64 = QVariant.LongLong
    FIELD_DOUBLE = QVariant.Double
    FIELD_STRING = QVariant.String

# Geometry types: Qgis.WkbType and Qgis.GeometryType from QGIS 3.30; QgsWkbTypes' enums before.
if hasattr(Qgis, "WkbType"):
    WKB_NO_GEOMETRY = Qgis.WkbType.NoGeometry
    WKB_POLYGON = Qgis.WkbType.Polygon
    GEOMETRY_POINT = Qgis.GeometryType.Point
    GEOMETRY_POLYGON = Qgis.GeometryType.Polygon
else:
    WKB_NO_GEOMETRY = QgsWkbTypes.Type.NoGeometry
    WKB_POLYGON = QgsWkbTypes.Type.Polygon
    GEOMETRY_POINT = QgsWkbTypes.GeometryType.PointGeometry
    GEOMETRY_POLYGON = QgsWkbTypes.GeometryType.PolygonGeometry

# Units: Qgis.DistanceUnit, Qgis.AreaUnit, Qgis.LayoutUnit from QGIS 3.30; QgsUnitTypes' enums before.
if hasattr(Qgis, "DistanceUnit"):
    DISTANCE_METERS = Qgis.DistanceUnit.Meters
    DISTANCE_KILOMETERS = Qgis.DistanceUnit.Kilometers
    AREA_HECTARES = Qgis.AreaUnit.Hectares
    LAYOUT_MILLIMETERS = Qgis.LayoutUnit.Millimeters
else:
    DISTANCE_METERS = QgsUnitTypes.DistanceUnit.DistanceMeters
    DISTANCE_KILOMETERS = QgsUnitTypes.DistanceUnit.DistanceKilometers
    AREA_HECTARES = QgsUnitTypes.AreaUnit.AreaHectares
    LAYOUT_MILLIMETERS = QgsUnitTypes.LayoutUnit.LayoutMillimeters

# Layer types: Qgis.LayerType from QGIS 3.30; the top-level QgsMapLayerType before.
if hasattr(Qgis, "LayerType"):
    LAYER_VECTOR = Qgis.LayerType.Vector
    LAYER_RASTER = Qgis.LayerType.Raster
else:
    LAYER_VECTOR = QgsMapLayerType.VectorLayer
    LAYER_RASTER = QgsMapLayerType.RasterLayer

# Processing: Qgis.ProcessingSourceType, ProcessingNumberParameterType, ProcessingParameterFlag and
# ProcessingAlgorithmFlag from QGIS 3.36; the QgsProcessing* class enums before.
if hasattr(Qgis, "ProcessingSourceType"):
    SOURCE_MAP_LAYER = Qgis.ProcessingSourceType.MapLayer
    SOURCE_RASTER = Qgis.ProcessingSourceType.Raster
    SOURCE_VECTOR = Qgis.ProcessingSourceType.Vector
    SOURCE_VECTOR_POINT = Qgis.ProcessingSourceType.VectorPoint
    SOURCE_VECTOR_POLYGON = Qgis.ProcessingSourceType.VectorPolygon
    NUMBER_INTEGER = Qgis.ProcessingNumberParameterType.Integer
    NUMBER_DOUBLE = Qgis.ProcessingNumberParameterType.Double
    PARAMETER_ADVANCED = Qgis.ProcessingParameterFlag.Advanced
    PARAMETER_OPTIONAL = Qgis.ProcessingParameterFlag.Optional
    PARAMETER_HIDDEN = Qgis.ProcessingParameterFlag.Hidden
    FILE_FOLDER = Qgis.ProcessingFileParameterBehavior.Folder
    ALGORITHM_NO_THREADING = Qgis.ProcessingAlgorithmFlag.NoThreading
else:
    SOURCE_MAP_LAYER = QgsProcessing.SourceType.TypeMapLayer
    SOURCE_RASTER = QgsProcessing.SourceType.TypeRaster
    SOURCE_VECTOR = QgsProcessing.SourceType.TypeVector
    SOURCE_VECTOR_POINT = QgsProcessing.SourceType.TypeVectorPoint
    SOURCE_VECTOR_POLYGON = QgsProcessing.SourceType.TypeVectorPolygon
    NUMBER_INTEGER = QgsProcessingParameterNumber.Type.Integer
    NUMBER_DOUBLE = QgsProcessingParameterNumber.Type.Double
    PARAMETER_ADVANCED = QgsProcessingParameterDefinition.Flag.FlagAdvanced
    PARAMETER_OPTIONAL = QgsProcessingParameterDefinition.Flag.FlagOptional
    PARAMETER_HIDDEN = QgsProcessingParameterDefinition.Flag.FlagHidden
    FILE_FOLDER = QgsProcessingParameterFile.Behavior.Folder
    ALGORITHM_NO_THREADING = QgsProcessingAlgorithm.Flag.FlagNoThreading

# Colour ramp interpolation: Qgis.ShaderInterpolationMethod from QGIS 3.38; QgsColorRampShader.Type before.
if hasattr(Qgis, "ShaderInterpolationMethod"):
    SHADER_LINEAR = Qgis.ShaderInterpolationMethod.Linear
else:
    SHADER_LINEAR = QgsColorRampShader.Type.Interpolated
