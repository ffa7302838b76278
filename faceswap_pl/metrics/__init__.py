"""Face-swap evaluation metrics: pure per-sample functions, torchmetrics ``Metric`` classes (states
synced across DDP ranks) and :class:`FaceEvaluator`, which runs the frozen networks on aligned crops.

IOD = inter-ocular distance of the reference face (distance between its two eye centres), so the
distance metrics are fractions of the eye distance, independent of the crop size.

===========  ==================  ===========================================================  ==============  ======
key          class               measures                                                     unit            better
===========  ==================  ===========================================================  ==============  ======
id_top1      IDRetrieval         swap's source identity is the best match among all source    fraction [0,1]  higher
                                 identities (max cosine per identity, FaceNet embeddings)
id_top5      IDRetrieval         ... among the 5 best (k capped at the number of identities)  fraction [0,1]  higher
id_cos       IDRetrieval         cosine between the swap and its own source embedding         cosine [-1,1]   higher
expression   ExpressionError     lips, eyelid and brow mesh points vs the target after a 3-D  target IOD      lower
                                 similarity fit on the rigid mesh points
eye          EyeLandmarkError    eyelid contours + iris centres (iris model) vs the target    target IOD      lower
pose_deg     PoseError           angle of the head rotation between swap and target meshes    degrees         lower
shape        ShapeError          face-oval silhouette vs the SOURCE after a 2-D similarity    source IOD      lower
                                 fit
jitter       TemporalJitter      landmark acceleration of the swap video minus the target's   IOD / frame^2   lower
                                 (raw: point unit / frame^2 without eye indices)
===========  ==================  ===========================================================  ==============  ======
"""

from faceswap_pl.metrics.aggregate import (
    ExpressionError,
    EyeLandmarkError,
    IDRetrieval,
    PoseError,
    ShapeError,
    TemporalJitter,
)
from faceswap_pl.metrics.evaluator import FaceEvaluator
from faceswap_pl.metrics.face import (
    expression_distance,
    eye_distance,
    inter_ocular_distance,
    jitter,
    pose_distance_deg,
    shape_distance,
)
from faceswap_pl.metrics.geometry import (
    MetricInputError,
    kabsch_rotation,
    rotation_angle_deg,
    similarity_align,
    similarity_transform,
)

__all__ = [
    "FaceEvaluator", "IDRetrieval", "ExpressionError", "EyeLandmarkError", "PoseError", "ShapeError",
    "TemporalJitter", "MetricInputError", "similarity_align", "similarity_transform", "kabsch_rotation",
    "rotation_angle_deg", "inter_ocular_distance", "expression_distance", "eye_distance", "pose_distance_deg",
    "shape_distance", "jitter",
]
