"""Set-prediction detectors: a transformer's queries each predict one box, trained by Hungarian
matching to the ground truth (DETR, Carion et al. 2020; Deformable DETR, Zhu et al. 2021;
baselines spec 3.1, seed spec 1). Every frame is an independent image; online inference is
stateless."""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import box_convert, nms

from ultradet.config import ExperimentConfig
from ultradet.modeling.backbone import build_backbone
from ultradet.modeling.meta_arch.base import VideoDetector
from ultradet.modeling.registry import META_ARCHITECTURES
from ultradet.modeling.set_prediction import SetCriterion
from ultradet.modeling.transformer import DeformableTransformer, DETRTransformer, EncodedMaps
from ultradet.modeling.transformer.layers import MLP

NUM_CLASSES = 1  # lesion
Predictions = list[dict[str, torch.Tensor]]  # per decoder layer: {"logits": [N, Q, K], "boxes": [N, Q, 4] cxcywh}


class SetPredictionDetector(VideoDetector):
    """Backbone -> input projection -> transformer -> per decoder layer, class logits and
    normalised boxes of every query; a subclass implements :meth:`predict`.

    Training: every decoder layer's predictions are matched and scored by ``criterion`` (the last
    layer's losses plus the auxiliary ones). Test: the last layer's queries, scored by
    ``sigmoid`` of the lesion logit (or its softmax probability when the class head has a "no
    object" logit), optionally NMS-filtered, at most ``detections_per_image`` boxes.

    Args:
        backbone: ``FloatTensor[T, 3, H, W] -> FloatTensor[T, C, h, w]``.
        criterion: :class:`ultradet.modeling.set_prediction.SetCriterion`.
        softmax: the class head has ``NUM_CLASSES + 1`` logits (the last: no object).
        nms_thresh_test: IoU of the test-time NMS; None: no NMS.
        detections_per_image: boxes kept per frame.
        pixel_mean, pixel_std: RGB normalisation, in 0..255 units.
    """

    def __init__(
        self,
        *,
        criterion: nn.Module,
        softmax: bool,
        nms_thresh_test: float | None,
        detections_per_image: int,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.criterion = criterion
        self.softmax = softmax
        self.nms_thresh_test = nms_thresh_test
        self.detections_per_image = detections_per_image

    @staticmethod
    def common_parts(cfg: ExperimentConfig) -> dict:
        """The parts every set-prediction detector takes from ``cfg.model`` (backbone, criterion,
        test rules, normalisation)."""
        d = cfg.model.detr
        return dict(
            backbone=build_backbone(cfg),
            criterion=SetCriterion.from_config(cfg, num_classes=NUM_CLASSES),
            softmax=cfg.model.set_criterion.class_loss == "softmax",
            nms_thresh_test=d.nms_thresh_test,
            detections_per_image=d.detections_per_image,
            pixel_mean=cfg.model.pixel_mean,
            pixel_std=cfg.model.pixel_std,
        )

    def predict(self, features: torch.Tensor) -> Predictions:
        """Per decoder layer, first first: ``{"logits": FloatTensor[N, Q, K], "boxes":
        FloatTensor[N, Q, 4]}``, boxes normalised (cx, cy, w, h) of the input frame, for the
        backbone map ``FloatTensor[N, C, h, w]``."""
        raise NotImplementedError

    def clip_losses(self, clip: dict) -> dict[str, torch.Tensor]:
        """The criterion's losses on the clip's frames, each frame an independent image."""
        images = self.normalise(clip["images"])
        return self.criterion(self.predict(self.backbone(images)), self.set_targets(clip, images))

    def set_targets(self, clip: dict, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """The clip's per-frame targets for the criterion: ``{"boxes": FloatTensor[K, 4]
        normalised (cx, cy, w, h) of the input frame, "labels": LongTensor[K]}``, for the
        normalised ``images`` ``FloatTensor[T, 3, H, W]``."""
        h, w = images.shape[-2:]
        scale = images.new_tensor([w, h, w, h])
        return [
            {"boxes": box_convert(t["boxes"] / scale, "xyxy", "cxcywh"), "labels": t["labels"]}
            for t in self.clip_targets(clip, images.device)
        ]

    def detect(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The last decoder layer's boxes of the frame (baselines spec 3.1, "Inference")."""
        return self.select(self.predict(self.backbone(images))[-1], tuple(images.shape[-2:]))

    def select(self, last: dict[str, torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """The detections of one frame from its last-layer predictions (``logits``
        ``FloatTensor[1, Q, K]``, ``boxes`` ``FloatTensor[1, Q, 4]`` normalised cxcywh): scores
        (sigmoid, or softmax with a no-object logit), NMS if configured, at most
        ``detections_per_image``; boxes XYXY in pixels of the input frame of ``size`` (h, w)."""
        logits = last["logits"][0]
        scores = logits.softmax(-1)[:, 0] if self.softmax else logits[:, 0].sigmoid()
        h, w = size
        boxes = box_convert(last["boxes"][0], "cxcywh", "xyxy") * logits.new_tensor([w, h, w, h])
        keep = nms(boxes, scores, self.nms_thresh_test) if self.nms_thresh_test is not None else scores.argsort(descending=True)
        keep = keep[: self.detections_per_image]
        return {"boxes": boxes[keep], "scores": scores[keep], "labels": torch.zeros_like(keep)}


@META_ARCHITECTURES.register("deformable_detr")
class DeformableDETR(SetPredictionDetector):
    """Deformable DETR on the C4 map (baselines spec 3.1, the DeformDETR row): input projection
    Conv1x1 + GroupNorm(32), :class:`DeformableTransformer`, per decoder layer its own class
    Linear (bias at the 0.01 prior) and 3-layer box MLP (last layer zero, the first copy's w/h
    bias -2) when refining boxes, one shared pair otherwise.

    Args:
        input_proj: ``FloatTensor[N, C, h, w] -> FloatTensor[N, d_model, h, w]``.
        transformer: :class:`DeformableTransformer` (one level).
        class_heads, box_heads: one per decoder layer.
        **kwargs: see :class:`SetPredictionDetector`.
    """

    def __init__(self, *, input_proj: nn.Module, transformer: DeformableTransformer, class_heads: nn.ModuleList, box_heads: nn.ModuleList, **kwargs):
        super().__init__(**kwargs)
        self.input_proj = input_proj
        self.transformer = transformer
        self.class_heads = class_heads
        self.box_heads = box_heads

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> "DeformableDETR":
        return cls(**cls.deformable_parts(cfg))

    @classmethod
    def deformable_parts(cls, cfg: ExperimentConfig) -> dict:
        """The constructor arguments of a Deformable DETR from ``cfg.model`` (its subclasses add theirs)."""
        parts, d = cls.common_parts(cfg), cfg.model.detr
        input_proj = nn.Sequential(nn.Conv2d(parts["backbone"].out_channels, d.d_model, 1), nn.GroupNorm(32, d.d_model))
        nn.init.xavier_uniform_(input_proj[0].weight)
        nn.init.zeros_(input_proj[0].bias)
        transformer = DeformableTransformer(
            d_model=d.d_model, num_heads=d.num_heads, encoder_layers=d.encoder_layers, decoder_layers=d.decoder_layers,
            dim_feedforward=d.dim_feedforward, dropout=d.dropout, num_levels=1, num_points=d.num_points,
            num_queries=d.num_queries, box_refine=d.box_refine,
        )
        class_heads, box_heads = deformable_heads(d.d_model, NUM_CLASSES + parts["softmax"], d.decoder_layers, shared=not d.box_refine)
        return dict(input_proj=input_proj, transformer=transformer, class_heads=class_heads, box_heads=box_heads, **parts)

    def predict(self, features: torch.Tensor) -> Predictions:
        hidden, boxes, _ = self.transformer.decode(self.encode(features), self.box_heads)
        return self.layer_predictions(hidden, boxes)

    def encode(self, features: torch.Tensor) -> EncodedMaps:
        """The encoder memory (``EncodedMaps``, memory ``[N, S, d_model]``) of the projected
        backbone maps ``FloatTensor[N, C, h, w]``."""
        return self.transformer.encode([self.input_proj(features)])

    def layer_predictions(self, hidden: list[torch.Tensor], boxes: list[torch.Tensor]) -> Predictions:
        """Per decoder layer ``{"logits": [N, Q, K], "boxes": [N, Q, 4]}`` from the decoder's
        states ``[N, Q, d_model]`` and boxes (normalised cxcywh), each layer through its own class head."""
        return [{"logits": head(h), "boxes": b} for head, h, b in zip(self.class_heads, hidden, boxes)]


def deformable_heads(d_model: int, num_logits: int, layers: int, *, shared: bool) -> tuple[nn.ModuleList, nn.ModuleList]:
    """Deformable DETR's class and box heads, one pair per decoder layer (or one pair repeated):
    class Linear ``d_model -> num_logits`` at the 0.01 prior, box MLP ``d_model -> 4`` with a zero
    last layer and the first box head's w/h bias -2 (baselines spec 3.1)."""
    def pair() -> tuple[nn.Linear, MLP]:
        cls_head = nn.Linear(d_model, num_logits)
        nn.init.constant_(cls_head.bias, -math.log((1 - 0.01) / 0.01))
        box_head = MLP(in_dim=d_model, hidden_dim=d_model, out_dim=4, num_layers=3)
        nn.init.zeros_(box_head.layers[-1].weight)
        nn.init.zeros_(box_head.layers[-1].bias)
        return cls_head, box_head

    pairs = [pair()] * layers if shared else [pair() for _ in range(layers)]
    # The original sets the -2 (a small initial w, h) on the first box head only.
    nn.init.constant_(pairs[0][1].layers[-1].bias[2:], -2.0)
    return nn.ModuleList(p[0] for p in pairs), nn.ModuleList(p[1] for p in pairs)


@META_ARCHITECTURES.register("detr")
class DETR(SetPredictionDetector):
    """Plain DETR on the C4 map (seed spec 1): input projection Conv1x1, :class:`DETRTransformer`,
    one class Linear and one 3-layer box MLP shared by every decoder layer, boxes
    ``sigmoid(MLP(h))``.

    Args:
        input_proj: ``FloatTensor[N, C, h, w] -> FloatTensor[N, d_model, h, w]``.
        transformer: :class:`DETRTransformer`.
        class_head: ``FloatTensor[..., d_model] -> FloatTensor[..., K]``.
        box_head: ``FloatTensor[..., d_model] -> FloatTensor[..., 4]``.
        **kwargs: see :class:`SetPredictionDetector`.
    """

    def __init__(self, *, input_proj: nn.Module, transformer: DETRTransformer, class_head: nn.Module, box_head: nn.Module, **kwargs):
        super().__init__(**kwargs)
        self.input_proj = input_proj
        self.transformer = transformer
        self.class_head = class_head
        self.box_head = box_head

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> "DETR":
        parts, d = cls.common_parts(cfg), cfg.model.detr
        transformer = DETRTransformer(
            d_model=d.d_model, num_heads=d.num_heads, encoder_layers=d.encoder_layers, decoder_layers=d.decoder_layers,
            dim_feedforward=d.dim_feedforward, dropout=d.dropout, num_queries=d.num_queries,
        )
        return cls(
            input_proj=nn.Conv2d(parts["backbone"].out_channels, d.d_model, 1),
            transformer=transformer,
            class_head=nn.Linear(d.d_model, NUM_CLASSES + parts["softmax"]),
            box_head=MLP(in_dim=d.d_model, hidden_dim=d.d_model, out_dim=4, num_layers=3),
            **parts,
        )

    def predict(self, features: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return [
            {"logits": self.class_head(h), "boxes": self.box_head(h).sigmoid()}
            for h in self.transformer(self.input_proj(features))
        ]
