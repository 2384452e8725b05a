"""toonlab: turn portrait photos into cartoon portraits with GANs, one lesson at a time.

Importing toonlab does no work: submodules are imported where they are used
(``toonlab.data``, ``toonlab.models``, ``toonlab.train``, ``toonlab.hub`` ...).
"""

__version__ = "0.1.0"
