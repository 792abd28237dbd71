"""The embedded data sets, shipped with the package (as `pipelines.experiments`) so the default
experiment runs from an installed copy too. Each folder keeps its source and licence in its README."""
