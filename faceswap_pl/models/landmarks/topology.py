"""The MediaPipe landmark topologies: which output index is which point of the face.

Two layouts, as the zoo's MediaPipe models return them (:mod:`faceswap_pl.models.landmarks.mediapipe`):

* the face mesh, 468 points; "image-left" is the subject's right side;
* the iris model on both eyes, 152 points: per eye 71 eye-contour / brow points, then 5 iris points
  (centre first), image-left eye first.

The index sets below are what the eye loss, the evaluation metrics (:mod:`faceswap_pl.metrics.face`) and the
video masks use; every one of them is defined here once.

Example:
    >>> len(MESH_EXPRESSION), len(MESH_STABLE), len(IRIS_EYE_SET)
    (92, 376, 34)
"""

from __future__ import annotations

#: points of the face mesh
MESH_POINTS = 468

#: mesh indices of the 16 eye-contour points that iris outputs 0-15 refine, per eye:
#: outer corner, lower lid (7 points), inner corner, upper lid (7 points) — image-left eye first.
MESH_EYE_CONTOUR = (
    (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173),
    (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398),
)
#: mesh indices of the eye corners (outer, inner) per eye, image-left eye first
MESH_EYE_CORNERS = ((33, 133), (263, 362))
#: mesh indices of the mouth corners, image-left first
MESH_MOUTH_CORNERS = (61, 291)
#: lips: outer contour (20 points, from the image-left mouth corner 61 along the lower lip to the
#: image-right corner 291 and back along the upper lip), then inner contour (20 points, corners 78 / 308)
MESH_LIPS = (
    61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185,
    78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191,
)
#: eyebrows, image-left brow then image-right brow: 5 lower-edge then 5 upper-edge points each, outer to inner
MESH_BROWS = (
    (46, 53, 52, 65, 55, 70, 63, 105, 66, 107),
    (276, 283, 282, 295, 285, 300, 293, 334, 296, 336),
)
#: eyelid contours (16 points per eye, image-left eye first): the mesh's ``MESH_EYE_CONTOUR``
MESH_EYES = MESH_EYE_CONTOUR
#: the points that carry expression: lips, both eyelid contours, both brows (92 points)
MESH_EXPRESSION = MESH_LIPS + MESH_EYES[0] + MESH_EYES[1] + MESH_BROWS[0] + MESH_BROWS[1]
#: every other mesh point (forehead, nose, cheeks, jaw, face oval: 376 points), the near-rigid part of the
#: head that expression and pose are aligned / measured on
MESH_STABLE = tuple(i for i in range(MESH_POINTS) if i not in set(MESH_EXPRESSION))
#: face-oval silhouette, 36 points clockwise in the image from the forehead top (10) over the image-right
#: temple, jaw and chin (152) back up the image-left side
MESH_FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)

#: iris output layout (152 points): per eye 71 eye-contour/brow points then 5 iris points
IRIS_EYE_POINTS = 71
IRIS_POINTS = 5
IRIS_PER_EYE = IRIS_EYE_POINTS + IRIS_POINTS
IRIS_OUTPUT_POINTS = 2 * IRIS_PER_EYE  # 152
#: indices of the two iris centres in the 152-point output (image-left eye, image-right eye)
IRIS_CENTRE_INDICES = (71, 147)
#: eyelid contours of both eyes (outputs 0-15 and 76-91, matching MESH_EYE_CONTOUR)
IRIS_EYELIDS = (tuple(range(0, 16)), tuple(range(IRIS_PER_EYE, IRIS_PER_EYE + 16)))
#: what the eye distance compares: image-left eyelid + iris centre, image-right eyelid + iris centre (34 points)
IRIS_EYE_SET = IRIS_EYELIDS[0] + (IRIS_CENTRE_INDICES[0],) + IRIS_EYELIDS[1] + (IRIS_CENTRE_INDICES[1],)
