"""The embedded dataset: simulated B-mode breast ultrasound sweeps in the CVA-BUS layout.

No real patient data ships with the project, so the pipeline runs end to end on videos simulated
from a small physical model. Each video is a linear-probe sweep through a 3D phantom:

* **Geometry.** Frame ``t`` is the plane at elevation ``y(t)`` (pixels; the frame's rows are depth
  ``z``, its columns lateral ``x``). ``y(t)`` is a smooth sweep with a slow wobble and a little
  jitter; the probe also drifts laterally by a few whole pixels. Structures are 3D, so
  consecutive frames are correlated and lesions appear, grow, shrink and disappear by themselves.
* **Speckle.** A complex Gaussian scatterer volume (independent planes every ``dy`` pixels of
  elevation, blended between neighbours with variance-preserving cos/sin weights) is weighted by
  the tissue's reflectivity and blurred with an anisotropic Gaussian point-spread function (fine
  axially, coarse laterally). The envelope is log-compressed to 8 bits over a fixed dynamic range.
* **Attenuation.** Amplitude decays as ``exp(-integral mu dz)`` (round trip), which time-gain
  compensation undoes only for the average tissue. A lesion or ligament whose ``mu`` differs from
  the tissue's therefore brightens (enhancement) or darkens (shadowing) everything below it.
* **Tissue.** Stand-off gel, a bright skin line, hypoechoic subcutaneous fat with lobular texture,
  heterogeneous hyperechoic fibroglandular tissue and striated pectoral muscle, separated by
  undulating interfaces.
* **Lesions** (the boxes). Benign: smooth oval, wider than tall, hypoechoic, low attenuation
  (posterior enhancement). Malignant: spiculated irregular outline, taller than wide, strongly
  attenuating (posterior shadowing). The box of a frame is the bounding box of the lesion's
  cross-section in that plane, when the cross-section is large enough to see.
* **Negative temporal contexts** (no boxes): mimics that one frame cannot tell from a lesion but
  time can, as in real breast ultrasound. Their cross-sections are drawn from the lesions'
  distributions (size, aspect ratio, outline irregularity, echogenicity, margin width, posterior
  enhancement or shadowing), so single-frame statistics overlap; their behaviour in time differs:

  - *Ducts and vessels* (``duct_rate`` per video): fluid-filled tubes running obliquely through the
    swept volume. While the probe sweeps along the tube, the plane cuts it at the same angle, so the
    cross-section keeps a **constant size** for many frames and **drifts sideways** at a steady
    speed (the tube's lateral slope), tapering only where the tube bends out of the swept range.
    A 3D mass instead appears, grows, shrinks and disappears.
  - *Shadow and refraction artefacts* (``shadow_rate`` per video): a Cooper's ligament or the edge
    of a fat lobule met near the critical angle refracts the beam away and leaves a hypoechoic,
    shadowing, mass-like region beneath it. It exists only while the probe holds that angle, so it
    **flickers**: full size for a few frames (``shadow_frames``), then gone.

  Thin Cooper's ligaments (a bright oblique line with a shadow band beneath, a few frames long)
  add realistic clutter.

Randomness: one master ``numpy`` generator (from ``seed``) draws the video ids and one child seed
per video, so a video's pixels depend only on ``(seed, split, index)``. PNGs are written with a
fixed compression level and JSONs with fixed formatting: the same arguments give byte-identical
files. Writing is atomic: everything goes to a temporary sibling folder that is renamed into place
only when complete.

Package layout, one job per module: :mod:`.scene` plans a video (phantom structures and probe
motion, all random draws of the plan), :mod:`.render` turns a plan into frames (tissue, speckle,
attenuation, the boxes), :mod:`.write` lays a dataset out on disk (video ids, splits, PNGs,
COCO-VID JSONs and the mimic sidecars of :mod:`ultradet.mimic_sidecar`).
"""

from ultradet.data.synthetic.render import SimulatedObject, simulate_video
from ultradet.data.synthetic.scene import MimicRates
from ultradet.data.synthetic.write import CATEGORIES, generate_dataset

__all__ = ["CATEGORIES", "MimicRates", "SimulatedObject", "generate_dataset", "simulate_video"]
