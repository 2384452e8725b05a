"""One module per model: :mod:`~toonlab.models.cyclegan`, :mod:`~toonlab.models.cartoongan`,
:mod:`~toonlab.models.munit`. :func:`build_model` makes one by name and preset."""
