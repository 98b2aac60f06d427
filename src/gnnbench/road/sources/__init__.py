"""One adapter per kind of source: crash portals, OSM, weather, traffic volume, Dataverse import."""
