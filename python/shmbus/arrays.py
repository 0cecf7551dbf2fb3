"""numpy views of a chunk's payload, from its attributes (docs/FORMAT.md, "Well-known
attributes"): ``Chunk.array()`` and the DLPack hand-off. numpy is imported only
here and only when asked for, so the package works without it.

Every array is ``numpy.ndarray(shape, dtype, buffer=chunk.payload, strides=...)``:
a read-only view over the segment's mapping, nothing copied (numpy refuses a
layout that would read past the buffer, and the attributes were checked against
the payload's length when the record was read).
"""
import sys

from .errors import NotAnArray

__all__ = ["to_array", "NUMPY_DTYPES", "PIXEL_VIEWS"]

#: numpy's names of FORMAT.md's element types, little-endian. bfloat16: see _dtype.
NUMPY_DTYPES = {"bool": "?", "int8": "i1", "uint8": "u1", "int16": "<i2", "uint16": "<u2", "int32": "<i4",
                "uint32": "<u4", "int64": "<i8", "uint64": "<u8", "float16": "<f2", "float32": "<f4",
                "float64": "<f8", "complex64": "<c8", "complex128": "<c16"}

#: A packed pixel format's view: (element dtype, channels per pixel; None: a 2-D array).
#: 3- and 4-byte formats are (h, w, bytes) of uint8 in memory order; R16 is one u16.
PIXEL_VIEWS = {"R8  ": ("u1", None), "R16 ": ("<u2", None), "GR88": ("u1", 2), "YUYV": ("u1", 2), "UYVY": ("u1", 2),
               "RG24": ("u1", 3), "BG24": ("u1", 3)}
PIXEL_VIEWS.update({fourcc: ("u1", 4) for fourcc in ("XR24", "AR24", "XB24", "AB24", "RX24", "RA24", "BX24", "BA24")})


def _numpy():
    try:
        import numpy
    except ImportError:
        raise NotAnArray("Chunk.array() needs numpy (pip install numpy)") from None
    return numpy


def _dtype(numpy, name):
    if name == "bfloat16":
        # numpy has no bfloat16; ml_dtypes (JAX's) adds one in host order.
        try:
            import ml_dtypes
        except ImportError:
            raise NotAnArray("dtype 'bfloat16' has no numpy type: install ml_dtypes for it, or view the "
                             "payload as uint16 yourself") from None
        if sys.byteorder != "little":
            raise NotAnArray("bfloat16 through ml_dtypes is host order, and this host is big-endian")
        return numpy.dtype(ml_dtypes.bfloat16)
    return numpy.dtype(NUMPY_DTYPES[name])


def layout(chunk):
    """(numpy dtype name or 'bfloat16', shape, strides) of the view `chunk.array()`
    makes: the array attributes if there are, else the image's; NotAnArray if none."""
    attributes = chunk.attributes
    array, image = attributes.array, attributes.image
    if array is not None:
        if array.itemsize is None:
            raise NotAnArray("chunk %d: dtype %r is not one this reader knows" % (chunk.sequence, array.dtype))
        return array.dtype, tuple(array.shape), tuple(array.strides)
    if image is not None:
        if image.bytes_per_pixel is None:
            raise NotAnArray("chunk %d: pixel format %r is not a packed format this reader knows"
                             % (chunk.sequence, image.pixel_format))
        element, channels = PIXEL_VIEWS[image.pixel_format]
        if channels is None:
            size = image.bytes_per_pixel
            return element, (image.height, image.width), (image.stride, size)
        return element, (image.height, image.width, channels), (image.stride, channels, 1)
    raise NotAnArray("chunk %d has neither array (dtype, shape) nor image (width, height, pixel-format) attributes"
                     % chunk.sequence)


def to_array(chunk):
    """The read-only numpy array the chunk's attributes describe, over its payload."""
    numpy = _numpy()
    name, shape, strides = layout(chunk)
    dtype = _dtype(numpy, name) if name in NUMPY_DTYPES or name == "bfloat16" else numpy.dtype(name)
    try:
        return numpy.ndarray(shape, dtype, buffer=chunk.payload, offset=0, strides=strides)
    except (ValueError, TypeError, OverflowError) as error:
        # Checked already against the payload; numpy's own limits (an intp) remain.
        raise NotAnArray("chunk %d: numpy cannot view %s %r with strides %r: %s"
                         % (chunk.sequence, name, list(shape), list(strides), error)) from None
