"""The training criterion of set-prediction detectors: match every decoder layer's queries to
the ground truth (:mod:`~ultradet.modeling.set_prediction.matcher`), then a class loss over all
queries and box losses over the matched ones. Three class losses: DETR's softmax cross-entropy
(Carion et al., ECCV 2020, section 3.1; seed spec 1), Deformable DETR's sigmoid focal loss
(Zhu et al., ICLR 2021; baselines spec 3.1) and AlignDETR's IA-BCE with many-to-one matching and
prime-sample weights (Cai et al., 2023; seed spec 2)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert, box_iou, generalized_box_iou_loss, sigmoid_focal_loss

from ultradet.config import ExperimentConfig
from ultradet.modeling.distributed import all_reduce_mean
from ultradet.modeling.set_prediction.matcher import hungarian_match, match_cost

CLASS_LOSSES = ("focal", "softmax", "ia_bce")


@dataclass(frozen=True)
class Matches:
    """The matched (query, GT) pairs of one decoder layer over a batch, M pairs:
    ``image``, ``query``: ``LongTensor[M]``, where the query is; ``bag``: ``LongTensor[M]``, the
    GT's index over the whole batch (the queries sharing a GT form its bag); ``labels``:
    ``LongTensor[M]``; ``boxes``: ``FloatTensor[M, 4]``, the GT boxes, normalised cxcywh."""

    image: torch.Tensor
    query: torch.Tensor
    bag: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor


class SetCriterion(nn.Module):
    """Hungarian-matched set-prediction losses of every decoder layer (DETR's "auxiliary decoding
    losses", section 3.2; baselines spec 3.1; seed spec 1-2).

    Each layer is matched anew, image by image (:func:`match_cost`, :func:`hungarian_match`):
    the ``"focal"`` class cost for ``"focal"`` and ``"ia_bce"``, the ``"softmax"`` one for
    ``"softmax"``, weighted by ``matcher_weights``; with ``match_num[l] = k > 1`` each GT gets up to
    k queries (AlignDETR's many-to-one matching). All losses but softmax's are divided by
    ``num_boxes``: the batch's GT count averaged over the ``torch.distributed`` workers when a
    process group is initialised (DETR's ``all_reduce`` / world size), at least 1; it counts GTs,
    not matched pairs, also on many-to-one layers (seed spec 2). Per layer, each multiplied by
    its weight in ``loss_weights = (class, l1, giou)``:

    * class, ``"focal"`` (Deformable DETR; baselines spec 3.1): ``sigmoid_focal_loss``
      (``focal_alpha``, ``focal_gamma``) against one-hot targets over all queries and classes,
      summed / num_boxes.
    * class, ``"softmax"`` (DETR eq. 2; seed spec 1): cross-entropy over ``num_classes + 1``
      logits, the last "no object" (the target of every unmatched query), class weights 1 and
      ``eos_coef`` for "no object", the weighted mean (``F.cross_entropy(weight=)``); not divided
      by num_boxes, as DETR.
    * class, ``"ia_bce"`` (AlignDETR; seed spec 2): :func:`ia_bce_loss` with targets ``t * w``
      (:func:`matching_quality`, :func:`prime_sample_weights`), summed / num_boxes.
    * L1 of the matched normalised cxcywh boxes, summed / num_boxes; ``1 - GIoU``
      (``generalized_box_iou_loss`` on XYXY), summed / num_boxes; with ``"ia_bce"`` each pair
      weighted by its prime-sample weight w (1 for other losses and on one-to-one layers).

    DETR's "cardinality error" is not returned: it carries no gradient and the engine sums every
    value of the dict (the original adds it to its logged total; baselines spec 3.1, Oddity).

    Args:
        class_loss: ``"focal"``, ``"softmax"`` or ``"ia_bce"``.
        num_classes: object classes (1: lesion), without "no object".
        matcher_weights: ``(w_class, w_l1, w_giou)`` of the matching cost.
        loss_weights: ``(class, l1, giou)`` multipliers of the losses.
        focal_alpha, focal_gamma: the focal cost and loss; with ``"ia_bce"`` also AlignDETR's
            quality exponent alpha and negative exponent gamma (its 0.25 and 2 are the focal ones).
        eos_coef: the "no object" class weight of ``"softmax"`` (DETR 0.1).
        match_num: queries per GT, one k for every layer or one per layer, first layer first
            (AlignDETR with 4 decoder layers: ``(2, 2, 2, 1)``).
        tau: AlignDETR's prime-sample temperature.

    Raises:
        ValueError: an unknown ``class_loss``, ``num_classes < 1``, weights that are not three
            numbers, an empty ``match_num`` or one with k < 1, ``tau <= 0``.
    """

    def __init__(
        self,
        *,
        class_loss: Literal["focal", "softmax", "ia_bce"],
        num_classes: int = 1,
        matcher_weights: Sequence[float] = (2.0, 5.0, 2.0),
        loss_weights: Sequence[float] = (2.0, 5.0, 2.0),
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        eos_coef: float = 0.1,
        match_num: Sequence[int] = (1,),
        tau: float = 1.5,
    ):
        super().__init__()
        if class_loss not in CLASS_LOSSES:
            raise ValueError(f"class_loss must be one of {CLASS_LOSSES}, got {class_loss!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        for name, weights in (("matcher_weights", matcher_weights), ("loss_weights", loss_weights)):
            if len(weights) != 3:
                raise ValueError(f"{name} must be (class, l1, giou), got {tuple(weights)}")
        if not match_num or any(int(k) != k or k < 1 for k in match_num):
            raise ValueError(f"match_num must be one or more integers >= 1, got {tuple(match_num)}")
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.class_loss = class_loss
        self.num_classes = num_classes
        self.matcher_weights = tuple(float(w) for w in matcher_weights)
        self.loss_weights = tuple(float(w) for w in loss_weights)
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.match_num = tuple(int(k) for k in match_num)
        self.tau = tau
        class_weight = torch.ones(num_classes + 1)
        class_weight[-1] = eos_coef
        # Not persistent: a constant of the loss, not a model weight to save or load.
        self.register_buffer("class_weight", class_weight, persistent=False)

    @property
    def num_logits(self) -> int:
        """K of the logits: ``num_classes``, plus one "no object" logit for ``"softmax"``."""
        return self.num_classes + (1 if self.class_loss == "softmax" else 0)

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, *, num_classes: int) -> "SetCriterion":
        """The criterion of ``cfg.model.set_criterion`` for ``num_classes`` object classes."""
        c = cfg.model.set_criterion
        return cls(
            class_loss=c.class_loss,
            num_classes=num_classes,
            matcher_weights=c.matcher_weights,
            loss_weights=c.loss_weights,
            focal_alpha=c.focal_alpha,
            focal_gamma=c.focal_gamma,
            eos_coef=c.eos_coef,
            match_num=c.match_num,
            tau=c.tau,
        )

    def forward(self, outputs: list[dict], targets: list[dict]) -> dict[str, torch.Tensor]:
        """Losses of all decoder layers.

        Args:
            outputs: one dict per decoder layer, first layer first, the last the final prediction:
                ``{"logits": FloatTensor[B, Q, K], "boxes": FloatTensor[B, Q, 4]}``, boxes
                normalised (cx, cy, w, h) in [0, 1], K = :attr:`num_logits`.
            targets: B dicts ``{"boxes": FloatTensor[G, 4] (normalised cxcywh), "labels":
                LongTensor[G] in [0, num_classes)}``, G may be 0.

        Returns:
            Scalars (float32), already weighted: ``loss_set_cls``, ``loss_set_l1``,
            ``loss_set_giou`` of the last layer and ``loss_set_cls_d{l}``, ``loss_set_l1_d{l}``,
            ``loss_set_giou_d{l}`` of the auxiliary layers l = 0 .. len(outputs) - 2.

        Raises:
            ValueError: no outputs, a ``match_num`` neither of length 1 nor one per layer,
                shapes that do not fit, or a label outside the classes.
        """
        match_num = self._match_num_per_layer(len(outputs))
        self._check_inputs(outputs, targets)
        device = outputs[-1]["logits"].device
        total_gt = torch.tensor(float(sum(len(t["labels"]) for t in targets)), device=device)
        num_boxes = max(all_reduce_mean(total_gt), 1.0)
        losses = {}
        for layer, (output, k) in enumerate(zip(outputs, match_num)):
            suffix = "" if layer == len(outputs) - 1 else f"_d{layer}"
            for name, value in self.layer_losses(output, targets, k, num_boxes).items():
                losses[name + suffix] = value
        return losses

    def layer_losses(self, output: dict, targets: list[dict], k: int, num_boxes: float) -> dict[str, torch.Tensor]:
        """``{"loss_set_cls", "loss_set_l1", "loss_set_giou"}`` of one layer's ``output`` (as in
        :meth:`forward`), matched with k queries per GT, divided by ``num_boxes`` (see the
        class docstring)."""
        logits, boxes = output["logits"].float(), output["boxes"].float()
        matches = self.match(logits, boxes, targets, k)
        matched_boxes = boxes[matches.image, matches.query]
        if self.class_loss == "ia_bce":
            matched_prob = logits[matches.image, matches.query, matches.labels].sigmoid()
            quality = matching_quality(matched_prob, matched_boxes, matches.boxes, self.focal_alpha)
            weight = prime_sample_weights(quality, matches.bag, self.tau)
            loss_cls = ia_bce_loss(logits, matches, quality * weight, self.focal_gamma) / num_boxes
        else:
            weight = torch.ones_like(matched_boxes[:, 0])
            loss_cls = self._class_loss(logits, matches, num_boxes)
        loss_l1 = (weight * (matched_boxes - matches.boxes).abs().sum(dim=-1)).sum() / num_boxes
        giou = generalized_box_iou_loss(_xyxy(matched_boxes), _xyxy(matches.boxes), reduction="none")
        loss_giou = (weight * giou).sum() / num_boxes
        w_class, w_l1, w_giou = self.loss_weights
        return {"loss_set_cls": w_class * loss_cls, "loss_set_l1": w_l1 * loss_l1, "loss_set_giou": w_giou * loss_giou}

    def match(self, logits: torch.Tensor, boxes: torch.Tensor, targets: list[dict], k: int) -> Matches:
        """Hungarian matching of each image of one layer (``logits`` ``[B, Q, K]``, ``boxes``
        ``[B, Q, 4]`` normalised cxcywh) to its ``targets``, k queries per GT at most."""
        class_cost = "softmax" if self.class_loss == "softmax" else "focal"
        image, query, bag, labels, gt_boxes = [], [], [], [], []
        first_gt = 0
        for b, target in enumerate(targets):
            target_labels = target["labels"].to(logits.device)
            target_boxes = target["boxes"].to(boxes)
            cost = match_cost(
                logits[b],
                boxes[b],
                target_labels,
                target_boxes,
                class_cost=class_cost,
                weights=self.matcher_weights,
                focal_alpha=self.focal_alpha,
                focal_gamma=self.focal_gamma,
            )
            query_index, gt_index = hungarian_match(cost, k)
            image.append(torch.full_like(query_index, b))
            query.append(query_index)
            bag.append(gt_index + first_gt)
            labels.append(target_labels[gt_index])
            gt_boxes.append(target_boxes[gt_index])
            first_gt += len(target_labels)
        return Matches(*(torch.cat(parts) for parts in (image, query, bag, labels, gt_boxes)))

    def _class_loss(self, logits: torch.Tensor, matches: Matches, num_boxes: float) -> torch.Tensor:
        """Unweighted ``"focal"`` or ``"softmax"`` class loss of one layer (class docstring)."""
        if self.class_loss == "focal":
            one_hot = torch.zeros_like(logits)
            one_hot[matches.image, matches.query, matches.labels] = 1.0
            loss = sigmoid_focal_loss(logits, one_hot, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="sum")
            return loss / num_boxes
        target = torch.full(logits.shape[:2], self.num_classes, dtype=torch.long, device=logits.device)
        target[matches.image, matches.query] = matches.labels
        return F.cross_entropy(logits.flatten(0, 1), target.flatten(), weight=self.class_weight.to(logits))

    def _match_num_per_layer(self, num_layers: int) -> tuple[int, ...]:
        if num_layers == 0:
            raise ValueError("SetCriterion needs the outputs of at least one decoder layer")
        if len(self.match_num) == 1:
            return self.match_num * num_layers
        if len(self.match_num) != num_layers:
            raise ValueError(
                f"match_num {self.match_num} must have length 1 or one entry per decoder layer ({num_layers})"
            )
        return self.match_num

    def _check_inputs(self, outputs: list[dict], targets: list[dict]) -> None:
        batch, queries, _ = outputs[-1]["logits"].shape
        if batch == 0:
            raise ValueError("SetCriterion needs at least one image (B = 0)")
        for layer, output in enumerate(outputs):
            logits_shape, boxes_shape = tuple(output["logits"].shape), tuple(output["boxes"].shape)
            if logits_shape != (batch, queries, self.num_logits) or boxes_shape != (batch, queries, 4):
                raise ValueError(
                    f"layer {layer}: expected logits [B, Q, {self.num_logits}] and boxes [B, Q, 4] of the last "
                    f"layer's B = {batch}, Q = {queries}, got {logits_shape} and {boxes_shape}"
                )
        if len(targets) != batch:
            raise ValueError(f"expected one target dict per image ({batch}), got {len(targets)}")


def matching_quality(prob: torch.Tensor, boxes: torch.Tensor, gt_boxes: torch.Tensor, alpha: float) -> torch.Tensor:
    """AlignDETR's quality of each matched pair (seed spec 2): ``t = p^alpha * IoU^(1 - alpha)``,
    clamped below at 0.01, detached (no gradient flows through t).

    Args:
        prob: ``FloatTensor[M]``, the sigmoid probability of the GT's class.
        boxes, gt_boxes: ``FloatTensor[M, 4]``, the matched prediction and its GT, normalised cxcywh.
        alpha: 0.25 in AlignDETR.

    Returns:
        ``FloatTensor[M]`` in [0.01, 1].
    """
    with torch.no_grad():
        iou = box_iou(_xyxy(boxes), _xyxy(gt_boxes)).diagonal()
        return (prob.pow(alpha) * iou.pow(1 - alpha)).clamp(min=0.01)


def prime_sample_weights(quality: torch.Tensor, bag: torch.Tensor, tau: float) -> torch.Tensor:
    """AlignDETR's prime-sample weights (seed spec 2): within each GT's bag of matched queries,
    rank the queries by decreasing quality (rank 0 = best; equal qualities in the order of the
    pairs), ``w = exp(-rank / tau)``. A one-to-one match has rank 0 and w = 1.

    Args:
        quality: ``FloatTensor[M]`` (:func:`matching_quality`).
        bag: ``LongTensor[M]``, the GT of each pair (any ids; equal ids = one bag).
        tau: temperature (1.5: weights 1, 0.51, 0.26, ...).

    Returns:
        ``FloatTensor[M]`` in (0, 1], detached.
    """
    with torch.no_grad():
        order = torch.arange(len(quality), device=quality.device)
        same_bag = bag[:, None] == bag[None, :]
        ahead = (quality[None, :] > quality[:, None]) | (
            (quality[None, :] == quality[:, None]) & (order[None, :] < order[:, None])
        )
        rank = (same_bag & ahead).sum(dim=1)
        return torch.exp(-rank.to(quality.dtype) / tau)


def ia_bce_loss(logits: torch.Tensor, matches: Matches, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """AlignDETR's IA-BCE classification loss, summed (seed spec 2): with ``p = sigmoid(logits)``,
    a matched (query, GT class) costs ``-y * log(p) - (1 - y) * log(1 - p)`` with its soft target
    ``y = t * w``; every other (query, class) ``-p^gamma * log(1 - p)``.

    Args:
        logits: ``FloatTensor[B, Q, K]``. matches: the layer's :class:`Matches` (M pairs).
        target: ``FloatTensor[M]`` in [0, 1], no gradient expected (``t * w``).
        gamma: the negatives' exponent (2 in AlignDETR).

    Returns:
        Scalar, the sum over all queries and classes (divide by num_boxes).
    """
    negative = logits.sigmoid().pow(gamma) * F.softplus(logits)  # softplus(x) = -log(1 - sigmoid(x))
    is_negative = torch.ones_like(logits)
    is_negative[matches.image, matches.query, matches.labels] = 0.0
    positive = F.binary_cross_entropy_with_logits(
        logits[matches.image, matches.query, matches.labels], target, reduction="sum"
    )
    return (negative * is_negative).sum() + positive


def _xyxy(boxes: torch.Tensor) -> torch.Tensor:
    return box_convert(boxes, "cxcywh", "xyxy")
