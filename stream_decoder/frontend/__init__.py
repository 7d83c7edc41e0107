"""Raw calcium frames in, the decoder's activity out: motion correction, ROI extraction with
neuropil subtraction, dF/F and online deconvolution, and the ROI sources labs have."""

from .pipeline import BadPixels, FrontEnd, FrontEndConfig, NoMatch, PlaneOutput
from .rois import RoiSet

__all__ = ["BadPixels", "FrontEnd", "FrontEndConfig", "NoMatch", "PlaneOutput", "RoiSet"]
