"""Readers and writers: GeoTIFF/COG via rasterio, Zarr datacubes, atomic writes."""
