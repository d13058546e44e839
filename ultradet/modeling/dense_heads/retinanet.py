"""RetinaNet's dense head on the single res4 map (Lin et al., "Focal Loss for Dense Object
Detection", ICCV 2017; the original's ``SingleFrameRetinaNet`` = detectron2 v0.6 ``RetinaNet`` with
the settings of baselines spec 2.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection._utils import BoxCoder, Matcher
from torchvision.ops import nms, sigmoid_focal_loss

from ultradet.config import ExperimentConfig
from ultradet.modeling.proposal_generator.anchors import cell_anchors, grid_anchors, label_anchors
from ultradet.modeling.proposal_generator.dense_layers import init_dense_head
from ultradet.modeling.proposal_generator.selection import clip_nonempty
from ultradet.modeling.registry import DENSE_HEADS


def _subnet(channels: int, num_convs: int) -> nn.Sequential:
    """``num_convs`` x (3x3 conv + ReLU), no normalisation (detectron2's ``RetinaNetHead``
    default ``NORM ""``)."""
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


@DENSE_HEADS.register("retinanet")
class RetinaNetHead(nn.Module):
    """Per anchor one foreground logit and 4 box deltas (baselines spec 2.1).

    Anchors: ``len(anchor_sizes) * len(anchor_aspect_ratios)`` per res4 location (5 x 6 = 30),
    :func:`~ultradet.modeling.proposal_generator.anchors.cell_anchors` shifted to the grid with
    offset 0 (detectron2's default). Head: a classification and a box subnet, each
    ``num_convs`` x (3x3 conv + ReLU), then a 3x3 conv to ``A`` logits and one to ``4A`` deltas
    (torchvision's ``BoxCoder`` with ``bbox_reg_weights``, detectron2's ``Box2BoxTransform``);
    every conv N(0, 0.01) with zero bias, the logits' bias at ``prior_prob`` (paper section 4.1).

    Training (per frame; a frame without GT boxes has only background anchors): IoU with the
    GT below ``iou_thresholds[0]`` background, from it to ``iou_thresholds[1]`` ignored, at or
    above foreground, plus detectron2's low-quality matches (each GT's highest-IoU anchors,
    :func:`~ultradet.modeling.proposal_generator.anchors.label_anchors`). Losses over the T
    frames, both divided by the loss normaliser:

    * ``loss_retinanet_cls``: sigmoid focal loss (``focal_alpha``, ``focal_gamma``; the
      original's gamma is 1.5, the paper's 2) summed over the non-ignored anchors;
    * ``loss_retinanet_reg``: smooth L1 (``smooth_l1_beta``; 0 = L1) of the foreground
      anchors' deltas, summed.

    The normaliser is detectron2's: an exponential moving average of the number of foreground
    anchors (at least 1) per training forward, ``n <- m * n + (1 - m) * max(fg, 1)``, updated
    before the losses are divided by it, starting at ``loss_normalizer_init``. One forward is
    one clip here and one GPU's clip (its 16 frames) in the original. It is a persistent buffer,
    so it is saved in checkpoints and a resumed run continues it exactly (detectron2 keeps a plain
    attribute, which restarts at 100 on resume). Under data parallelism, DDP broadcasts rank 0's
    buffers at every forward, so all workers divide by rank 0's average (the original: each
    GPU by its own).

    Inference (per frame, detectron2's defaults): foreground probability ``sigmoid(logit) >
    score_thresh_test``, the ``topk_candidates_test`` best, decoded, NMS at ``nms_thresh_test``,
    the ``detections_per_image`` best, clipped to the image, empty boxes dropped (detectron2
    clips after NMS, in its post-processing).

    Args:
        in_channels: feature channels (256). stride: feature stride in pixels (16).
        anchor_sizes, anchor_aspect_ratios: anchor sides in pixels and ratios h / w.
        num_convs, prior_prob: head depth and initial foreground probability.
        iou_thresholds: (background below, foreground at or above).
        bbox_reg_weights: (wx, wy, ww, wh) of the box coder.
        focal_alpha, focal_gamma, smooth_l1_beta: losses.
        loss_normalizer_init, loss_normalizer_momentum: the normaliser's average.
        score_thresh_test, topk_candidates_test, nms_thresh_test, detections_per_image: inference.
    """

    def __init__(
        self,
        *,
        in_channels: int = 256,
        stride: int = 16,
        anchor_sizes: tuple[float, ...] = (32.0, 64.0, 128.0, 256.0, 512.0),
        anchor_aspect_ratios: tuple[float, ...] = (0.33, 0.5, 0.66, 1.0, 2.0, 3.0),
        num_convs: int = 4,
        prior_prob: float = 0.01,
        iou_thresholds: tuple[float, float] = (0.3, 0.5),
        bbox_reg_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
        focal_alpha: float = 0.25,
        focal_gamma: float = 1.5,
        smooth_l1_beta: float = 0.0,
        loss_normalizer_init: float = 100.0,
        loss_normalizer_momentum: float = 0.9,
        score_thresh_test: float = 0.05,
        topk_candidates_test: int = 1000,
        nms_thresh_test: float = 0.5,
        detections_per_image: int = 100,
    ):
        super().__init__()
        self.stride = stride
        anchors = cell_anchors(tuple(anchor_sizes), tuple(anchor_aspect_ratios))
        self.register_buffer("cell_anchors", anchors, persistent=False)  # from the config, not checkpoints
        self.num_anchors = len(anchors)
        self.cls_subnet = _subnet(in_channels, num_convs)
        self.bbox_subnet = _subnet(in_channels, num_convs)
        self.cls_score = nn.Conv2d(in_channels, self.num_anchors, 3, padding=1)
        self.bbox_pred = nn.Conv2d(in_channels, 4 * self.num_anchors, 3, padding=1)
        init_dense_head(self, self.cls_score, prior_prob)
        self.box_coder = BoxCoder(tuple(bbox_reg_weights))
        low, high = iou_thresholds
        self.matcher = Matcher(high, low, allow_low_quality_matches=True)
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.smooth_l1_beta = smooth_l1_beta
        self.momentum = loss_normalizer_momentum
        # Training state, in checkpoints: a resumed run must divide by the same number.
        self.register_buffer("loss_normalizer", torch.tensor(float(loss_normalizer_init)))
        self.score_thresh = score_thresh_test
        self.topk_candidates = topk_candidates_test
        self.nms_thresh = nms_thresh_test
        self.detections_per_image = detections_per_image


    @classmethod
    def from_config(cls, cfg: ExperimentConfig, *, in_channels: int, stride: int) -> "RetinaNetHead":
        """The head of ``cfg.model.retinanet`` over a map of ``in_channels`` channels and
        ``stride`` pixels."""
        return cls(in_channels=in_channels, stride=stride, **cfg.model.retinanet.model_dump())

    def anchors(self, grid_size: tuple[int, int]) -> torch.Tensor:
        """``FloatTensor[h * w * A, 4]``, XYXY pixels, for an ``(h, w)`` feature grid."""
        return grid_anchors(self.cell_anchors, grid_size, self.stride)

    def predict(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense outputs of ``FloatTensor[T, C, h, w]``: ``logits`` ``[T, h*w*A]`` and ``deltas``
        ``[T, h*w*A, 4]``, in the order of :meth:`anchors` (row, column, anchor)."""
        frames, _, h, w = features.shape
        logits = self.cls_score(self.cls_subnet(features))
        deltas = self.bbox_pred(self.bbox_subnet(features))
        logits = logits.permute(0, 2, 3, 1).reshape(frames, -1)
        deltas = deltas.view(frames, self.num_anchors, 4, h, w).permute(0, 3, 4, 1, 2).reshape(frames, -1, 4)
        return logits, deltas

    def forward(
        self, features: torch.Tensor, image_size: tuple[int, int], targets: list[dict] | None = None
    ) -> tuple[list[dict], dict[str, torch.Tensor]]:
        """
        Args:
            features: ``FloatTensor[T, C, h, w]``, res4 maps of T frames.
            image_size: ``(H, W)`` of the (shared) input image size.
            targets: training only: T dicts ``{"boxes": FloatTensor[K, 4] XYXY pixels, ...}``.

        Returns:
            ``(detections, losses)``: T dicts ``{"boxes": FloatTensor[N, 4], "scores":
            FloatTensor[N]}`` (XYXY input pixels, foreground probability, decreasing,
            ``N <= detections_per_image``) and ``{"loss_retinanet_cls", "loss_retinanet_reg"}``
            in training (the normaliser updated once), ``{}`` otherwise.

        Raises:
            ValueError: training without one target dict per frame.
        """
        logits, deltas = self.predict(features)
        anchors = self.anchors(tuple(features.shape[-2:])).to(deltas.dtype)
        detections = [self.detect(lg, dl, anchors, image_size) for lg, dl in zip(logits, deltas)]
        if not self.training:
            return detections, {}
        if targets is None or len(targets) != len(features):
            raise ValueError(f"RetinaNet training needs one target dict per frame ({len(features)})")
        return detections, self.losses(anchors, logits, deltas, targets)

    @torch.no_grad()
    def detect(
        self, logits: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor, image_size: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """One frame's detections (detectron2 v0.6 ``RetinaNet`` inference, single level).

        Args:
            logits: ``FloatTensor[N]``; deltas: ``FloatTensor[N, 4]``; anchors: ``FloatTensor[N, 4]``
                (XYXY pixels), in the same order.
            image_size: ``(H, W)`` of the input image.

        Returns:
            ``{"boxes": FloatTensor[P, 4], "scores": FloatTensor[P]}``: probabilities above
            ``score_thresh_test``, at most ``detections_per_image``, sorted by decreasing score,
            boxes XYXY inside ``[0, W] x [0, H]`` with positive width and height.
        """
        scores = logits.float().sigmoid()
        candidates = torch.nonzero(scores > self.score_thresh).squeeze(1)
        scores, order = scores[candidates].topk(min(self.topk_candidates, len(candidates)))
        candidates = candidates[order]
        boxes = self.box_coder.decode_single(deltas[candidates].float(), anchors[candidates])
        keep = nms(boxes, scores, self.nms_thresh)[: self.detections_per_image]
        return clip_nonempty(boxes[keep], scores[keep], image_size)

    def losses(
        self, anchors: torch.Tensor, logits: torch.Tensor, deltas: torch.Tensor, targets: list[dict]
    ) -> dict[str, torch.Tensor]:
        """Losses of T frames: ``logits`` ``[T, N]``, ``deltas`` ``[T, N, 4]``, shared ``anchors``
        ``[N, 4]`` (XYXY pixels); ``targets`` as in :meth:`forward`. Updates the normaliser."""
        labels, matched = zip(*(label_anchors(anchors, t["boxes"].to(anchors), self.matcher) for t in targets))
        labels, matched = torch.stack(labels), torch.stack(matched)
        valid, foreground = labels >= 0, labels == 1
        normaliser = self.update_normaliser(int(foreground.sum()))
        loss_cls = sigmoid_focal_loss(
            logits[valid].float(), labels[valid], alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="sum"
        )
        # Encode foreground anchors only: background ones may be matched to nothing (K = 0).
        frame_anchors = anchors.expand(len(targets), -1, -1)
        target_deltas = self.box_coder.encode_single(matched[foreground], frame_anchors[foreground])
        loss_reg = F.smooth_l1_loss(
            deltas[foreground].float(), target_deltas, beta=self.smooth_l1_beta, reduction="sum"
        )
        return {"loss_retinanet_cls": loss_cls / normaliser, "loss_retinanet_reg": loss_reg / normaliser}

    @torch.no_grad()
    def update_normaliser(self, num_foreground: int) -> torch.Tensor:
        """One step of the normaliser's average with ``num_foreground`` foreground anchors
        (counted as at least 1); returns a copy of the new value (the buffer changes again at the
        next forward, before this one's backward when gradients accumulate)."""
        self.loss_normalizer.mul_(self.momentum).add_((1 - self.momentum) * max(num_foreground, 1))
        return self.loss_normalizer.clone()
