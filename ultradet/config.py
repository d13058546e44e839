"""Typed experiment configuration: one tree, the paper's defaults, validated at load.

An experiment is a YAML file under ``experiments/`` holding only what differs from the defaults
below (the published UltraDet R34-C4 settings, ``../shared/docs/ultradet-spec.md`` sections 2-3,
except the backbone's initialisation: see :class:`BackboneConfig` and
``experiments/profiles/paper.yaml``).
``load_config`` merges, in order: defaults <- experiment file(s) <- ``key.path=value`` overrides,
validating the tree after each layer, so a bad value in one file is reported with that file as
its source even when a later layer (e.g. the profile) sets the same key. Unknown keys and
ill-typed values raise :class:`ConfigError` naming the offending key, the layer and the valid
keys, so a typo never silently falls back to a default.

Names are the project's single vocabulary: the config key, the constructor argument, the MLflow
param and the report column agree (``poto_alpha``, ``interval_pre_test``,
``anchor_aspect_ratios``, ``fold``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ultradet.errors import UserError


class ConfigError(UserError, ValueError):
    """A configuration file or override is invalid; the message names the key and valid keys."""


class _Section(BaseModel):
    # Every section rejects unknown keys (typos) and re-validates on assignment.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


# --------------------------------------------------------------------------------------------- data
class InputConfig(_Section):
    """Resize / colour augmentation (spec section 2). Areas in pixels^2."""

    fixed_area_train: float = Field(900_000.0, gt=0, description="target frame area before scale jitter")
    scale_train: tuple[float, float] = (0.3, 1.5)
    fixed_area_test: float = Field(900_000.0, gt=0)
    scale_test: float = Field(1.0, gt=0)
    color_jitter: float = Field(0.3, ge=0, lt=1, description="contrast/brightness factor range 1 +- x")
    flip_prob: float = Field(0.5, ge=0, le=1)


class SamplerConfig(_Section):
    """Training clip sampler (spec section 2; ``ultradet.data.sampler``): ``num_out_frames`` sorted
    frames from an ``interval``-frame window (``name: clip``, the original's ``FrameSampler``);
    ``name: memory`` (``MemoryFrameSampler``, baselines spec 0, MEGA and CVA-Net) puts
    ``memory_frames`` sorted frames from the ``memory_interval`` frames before that window first
    (``memory_frames: null``: as many as ``num_out_frames``, CVA-Net's one-to-one pairs)."""

    name: Literal["clip", "memory"] = "clip"
    interval: int = Field(30, ge=1)
    num_out_frames: int = Field(16, ge=1)
    # Defaults: the original MEGA config's MEMORY_INTERVAL / MEMORY_FRAMES (baselines spec 1.5).
    memory_interval: int = Field(10, ge=1, description="frames before the local window that memory frames come from")
    memory_frames: int = Field(
        6, ge=1, description="memory frames at the start of a clip (name: memory); null: as many as num_out_frames"
    )

    @model_validator(mode="before")
    @classmethod
    def _memory_as_many_as_local(cls, data: Any) -> Any:
        # null is resolved on every validation of the merged layers, so a profile that shortens the
        # local part shortens the memory with it (CVA-Net pairs the two one to one).
        if isinstance(data, dict) and "memory_frames" in data and data["memory_frames"] is None:
            return {**data, "memory_frames": data.get("num_out_frames", cls.model_fields["num_out_frames"].default)}
        return data

    @property
    def clip_frames(self) -> int:
        """Frames ``T`` of a training clip: the local frames, after the memory frames if any."""
        return self.num_out_frames + (self.memory_frames if self.name == "memory" else 0)


# -------------------------------------------------------------------------------------------- model
class BackboneConfig(_Section):
    """ResNet up to res4 (single C4 map, stride 16), spec section 3.2.

    The original starts from ImageNet ResNet weights (``MODEL.WEIGHTS``, a detectron2 ``r34.pkl``)
    with FrozenBN and ``FREEZE_AT=2``; that is ``experiments/profiles/paper.yaml``. The defaults
    here train from scratch with BatchNorm and nothing frozen, so that a config never needs a file
    or a download unless it asks for one. ``weights`` forms: see ``ultradet.modeling.pretrained``.
    """

    depth: Literal[18, 34] = 34
    norm: Literal["frozen_bn", "bn"] = Field("bn", description="frozen_bn needs pretrained weights")
    freeze_at: int = Field(0, ge=0, le=4, description="0: nothing frozen; 1: stem; 2: stem+res2 ...; >0 needs weights")
    weights: str | None = Field(
        None,
        description="pretrained ResNet: 'torchvision:ResNet34_Weights.IMAGENET1K_V1' (torchvision's "
        "download and cache), a local torchvision-format state dict, or a detectron2 .pkl; None = random init",
    )

    @model_validator(mode="after")
    def _torchvision_depth(self) -> "BackboneConfig":
        prefix = "torchvision:"
        if self.weights and self.weights.startswith(prefix) and not self.weights.startswith(f"{prefix}ResNet{self.depth}_"):
            raise ValueError(f"weights {self.weights!r} are not ResNet-{self.depth} weights (depth={self.depth})")
        return self


class RPNConfig(_Section):
    """Anchor-based RPN (spec section 3.3)."""

    anchor_sizes: tuple[float, ...] = (32.0, 64.0, 128.0, 256.0, 512.0)
    anchor_aspect_ratios: tuple[float, ...] = (0.33, 0.5, 0.66, 1.0, 2.0, 3.0)
    pre_nms_topk_train: int = Field(256, ge=1)
    pre_nms_topk_test: int = Field(256, ge=1)
    post_nms_topk_train: int = Field(16, ge=1)
    post_nms_topk_test: int = Field(16, ge=1)
    nms_thresh: float = Field(0.7, gt=0, le=1)
    iou_thresholds: tuple[float, float] = (0.3, 0.7)
    batch_size_per_image: int = Field(256, ge=1)
    positive_fraction: float = Field(0.5, gt=0, le=1)


class POTOConfig(_Section):
    """POTO / DeFCN one-to-one proposals (spec section 3.3, DeFCN paper eq. 2-4)."""

    poto_alpha: float = Field(0.8, ge=0, le=1, description="quality = p^(1-alpha) * IoU^alpha")
    center_sampling_radius: float = Field(1.5, gt=0, description="in units of the stride")
    aux_topk: int = Field(9, ge=1)
    filter_kernel_size: int = Field(3, ge=1)
    filter_tau: int = Field(2, ge=1)
    focal_alpha: float = Field(0.25, ge=0, le=1)
    focal_gamma: float = Field(2.0, ge=0)
    reg_weight: float = Field(2.0, ge=0)
    prior_prob: float = Field(0.01, gt=0, lt=1)
    num_convs: int = Field(4, ge=0)
    pre_nms_topk: int = Field(256, ge=1)
    num_proposals: int = Field(16, ge=1)
    nms_thresh: float = Field(0.6, gt=0, le=1)
    box_bias_init: float = Field(
        0.0, ge=0,
        description="initial bias of the (l, t, r, b) conv, in strides: 0 = FCOS's zero init (half of the "
        "distances start in ReLU's flat part, where a side gets no gradient); > 0 starts every side alive",
    )


class ProposalGeneratorConfig(_Section):
    """Which proposal generator a two-stage model runs; its keys live in its own section
    (``model.rpn``, ``model.poto``), as detectron2's ``MODEL.PROPOSAL_GENERATOR.NAME``."""

    name: Literal["rpn", "poto"] = "rpn"


class FlowConfig(_Section):
    """Inverse optical flow estimator for NTCA and FGFA (spec section 3.7).

    ``name: auto`` (the default) is the learned ``flownets`` when ``weights`` names a FlowNetS
    checkpoint (the original's ``flownet.ckpt``, ``docs/reproduction.md``) and ``farneback``
    otherwise; :attr:`estimator` is the resolved name.
    """

    name: Literal["auto", "farneback", "dis", "flownets"] = "auto"
    weights: str | None = Field(None, description="FlowNetS checkpoint (the original's flownet.ckpt); flownets/auto only")

    @property
    def estimator(self) -> str:
        """The estimator that runs: ``name``, with ``auto`` resolved by ``weights``."""
        if self.name == "auto":
            return "flownets" if self.weights is not None else "farneback"
        return self.name

    @model_validator(mode="after")
    def _weights_only_for_flownets(self) -> "FlowConfig":
        if self.weights is not None and self.name not in ("auto", "flownets"):
            raise ValueError(f"weights is a FlowNetS checkpoint; name={self.name!r} takes none")
        return self


class ROIHeadsConfig(_Section):
    """RoI heads: RoIAlign + res5 + Fast R-CNN box predictor (spec sections 3.4-3.7). The
    temporal layers' keys live in their own sections (``model.relation``, ``model.ntca``,
    ``model.mega``, ``model.selsa``), the test-time window in ``model.temporal``."""

    name: Literal["single_frame", "frame_relation", "relation", "selsa", "mega", "ntca"] = "ntca"
    d_model: int = Field(256, ge=8)
    pooler_resolution: int = Field(14, ge=1)
    batch_size_per_image: int = Field(16, ge=1)
    positive_fraction: float = Field(0.5, gt=0, le=1)
    fg_iou_thresh: float = Field(0.5, gt=0, le=1)
    bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    score_thresh_test: float = Field(0.0, ge=0, le=1)
    nms_thresh_test: float = Field(0.5, gt=0, le=1)
    detections_per_image: int = Field(100, ge=1)


class TemporalConfig(_Section):
    """The test-time window of every temporal model (RoI heads and FGFA's feature aggregation):
    frames ``t - interval_pre_test .. t + interval_after_test``.

    ``aggregate_test: false`` is the temporal ablation (test time only, same weights): every
    temporal aggregation sees the classified frame alone, as at the first frame of a video: the
    window is that frame (no lookahead), MEGA's memory is empty, NTCA's context is each RoI's own
    vector, FGFA's map is the frame's own (the heads' and FGFA's docstrings say exactly which
    tensors go). Training ignores it; a model without temporal aggregation is unchanged.
    """

    interval_pre_test: int = Field(15, ge=0, description="earlier frames kept in the test buffer")
    interval_after_test: int = Field(
        0, ge=0, description="bounded lookahead: frame t is output after frame t + k is seen; 0 = causal"
    )
    aggregate_test: bool = Field(
        True, description="false: temporal ablation, every temporal aggregation sees only the classified frame at test time"
    )


class RelationConfig(_Section):
    """The RoI relation module of RelationNet, BasicDet, MEGA and UltraDet (spec section 3.5);
    SELSA stacks ``relation_layers`` SELSA layers instead."""

    relation_layers: int = Field(2, ge=1)
    relation_heads: int = Field(8, ge=1)


class NTCAConfig(_Section):
    """Negative temporal context aggregation (spec section 3.7)."""

    context_frames: int = Field(2, ge=1, description="NTCA context keyframes")
    context_step: int = Field(8, ge=1, description="frames between NTCA keyframes at test")


class MEGAConfig(_Section):
    """MEGA's memory (baselines spec 1.5)."""

    memory_frames: int = Field(6, ge=1, description="MEGA memory frames before the local window")


class SELSAConfig(_Section):
    """SELSA's layers (baselines spec 1.4); their number is ``model.relation.relation_layers``."""

    transform_init: Literal["normal", "identity"] = Field(
        "normal",
        description="start of each layer's transform W in Y = (XW + b) + W_o(AV): normal = the original's "
        "N(0, 0.01^2); identity = W = I, so that layers inserted into a pretrained detector (model.weights) "
        "start by passing its RoI vectors on to its predictor",
    )


class FGFAConfig(_Section):
    """FGFA's feature aggregation (baselines spec 1.3); its flow estimator is ``model.flow``
    and its test window ``model.temporal``."""

    zero_flow: bool = Field(
        False, description="the original's behaviour: reference maps are not warped (spec 1.3 Bug)"
    )


# ---------------------------------------------------------------------------------- one-stage heads
class DenseHeadConfig(_Section):
    """Which dense head a one-stage model runs (``meta_architecture: one_stage`` /
    ``track_one_stage``); its keys live in its own section (``model.poto``, ``model.retinanet``,
    ``model.fcos``, ``model.yolox``), as detectron2's ``MODEL.RETINANET``."""

    name: Literal["poto", "retinanet", "fcos", "yolox"] = "poto"


class RetinaNetConfig(_Section):
    """RetinaNet's head on one level (baselines spec 2.1; Lin et al., ICCV 2017). Keys are the
    original's (detectron2's ``MODEL.RETINANET``, ``MODEL.ANCHOR_GENERATOR`` and
    ``TEST.DETECTIONS_PER_IMAGE``) in snake case, defaults its values."""

    anchor_sizes: tuple[float, ...] = Field((32.0, 64.0, 128.0, 256.0, 512.0), min_length=1)
    anchor_aspect_ratios: tuple[float, ...] = Field((0.33, 0.5, 0.66, 1.0, 2.0, 3.0), min_length=1)
    num_convs: int = Field(4, ge=0, description="3x3 conv + ReLU layers of each branch")
    prior_prob: float = Field(0.01, gt=0, lt=1, description="initial foreground probability")
    iou_thresholds: tuple[float, float] = Field(
        (0.3, 0.5), description="(background below, foreground at or above); ignored in between"
    )
    bbox_reg_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    focal_alpha: float = Field(0.25, ge=0, le=1)
    focal_gamma: float = Field(1.5, ge=0, description="the original's 1.5 (detectron2 and the paper: 2)")
    smooth_l1_beta: float = Field(0.0, ge=0, description="0: L1 loss on the box deltas")
    loss_normalizer_init: float = Field(100.0, gt=0, description="start of the positive-anchor count EMA")
    loss_normalizer_momentum: float = Field(0.9, ge=0, le=1)
    score_thresh_test: float = Field(0.05, ge=0, lt=1)
    topk_candidates_test: int = Field(1000, ge=1)
    nms_thresh_test: float = Field(0.5, gt=0, le=1)
    detections_per_image: int = Field(
        100, ge=1, description="the original's 100, the only table model not capped at 16 (R@16 counts them all)"
    )

    @model_validator(mode="after")
    def _ordered_thresholds(self) -> "RetinaNetConfig":
        low, high = self.iou_thresholds
        if not 0 <= low <= high <= 1:
            raise ValueError(
                f"iou_thresholds must be (low, high) with 0 <= low <= high <= 1, got {self.iou_thresholds}"
            )
        return self


class FCOSConfig(_Section):
    """FCOS's head on one level (baselines spec 2.2; Tian et al., ICCV 2019). Names follow the
    original's ``MODEL.FCOS`` keys, defaults are its ``add_fcos_config`` values; its FCOS config
    sets ``NMS_TH 0.7`` (``experiments/fcos.yaml``). Fixed as the original's config fixes them:
    GroupNorm towers, no shared tower, the learnt scale, centre sampling, the GIoU loss, one level
    for all sizes, threshold on the class probability alone (``THRESH_WITH_CTR False``)."""

    num_convs: int = Field(4, ge=0, description="convs of each of the class and box towers (NUM_CLS_CONVS, NUM_BOX_CONVS)")
    prior_prob: float = Field(0.01, gt=0, lt=1, description="initial sigmoid(cls) (PRIOR_PROB)")
    center_sampling_radius: float = Field(1.5, gt=0, description="in units of the stride (POS_RADIUS)")
    focal_alpha: float = Field(0.5, ge=0, le=1, description="LOSS_ALPHA: the original's 0.5, FCOS's paper 0.25")
    focal_gamma: float = Field(2.0, ge=0, description="LOSS_GAMMA")
    score_thresh_test: float = Field(0.05, ge=0, lt=1, description="on sigmoid(cls) alone (INFERENCE_TH_TEST)")
    pre_nms_topk_test: int = Field(256, ge=1, description="PRE_NMS_TOPK_TEST, ranked by sigmoid(cls) * sigmoid(ctr)")
    nms_thresh_test: float = Field(0.6, gt=0, le=1, description="NMS_TH")
    detections_per_image: int = Field(
        16, ge=1, description="POST_NMS_TOPK_TEST: scores below the n-th largest are dropped (ties may keep more)"
    )


class YOLOXConfig(_Section):
    """YOLOX's decoupled head and SimOTA (baselines spec 2.3; Ge et al., 2021). Keys are the
    original's (``MODEL.YOLOX`` and the constants of its ``proposal_generator/yolox.py``) in snake
    case, defaults its values; the head is as wide as the feature map (256), as the original."""

    num_convs: int = Field(2, ge=0, description="3x3 conv + BN + SiLU layers of each branch")
    norm: Literal["bn", "gn"] = Field(
        "bn", description="the head's normalisation: bn = the original's trainable BatchNorm, gn = GroupNorm 32"
    )
    prior_prob_cls: float = Field(0.01, gt=0, lt=1, description="initial sigmoid(class logit)")
    prior_prob_obj: float = Field(
        1e-5, gt=0, lt=1, description="initial sigmoid(objectness logit): the original's 1e-5 (YOLOX: 0.01)"
    )
    center_radius: float = Field(2.5, gt=0, description="SimOTA's centre region half-side, in strides")
    simota_topk_iou: int = Field(10, ge=1, description="dynamic k = max(1, floor(sum of a GT's top-n IoUs))")
    simota_iou_weight: float = Field(3.0, ge=0, description="weight of -log IoU in SimOTA's cost")
    iou_loss_weight: float = Field(5.0, ge=0, description="weight of the 1 - IoU^2 loss")
    l1_loss: bool = Field(
        True, description="L1 loss on the raw box outputs: always on in the original (YOLOX: last epochs only)"
    )
    pre_nms_topk_test: int = Field(256, ge=1, description="the original's PRE_NMS_TOPK")
    nms_thresh_test: float = Field(0.7, gt=0, le=1)
    detections_per_image: int = Field(16, ge=1, description="the original's NUM_PROPOSALS")


class TrackerConfig(_Section):
    """Track-YOLO's parameter-free tracker (baselines spec 2.4, ``CacheTracker``; the original's
    ``MODEL.TRACKER.*``, less ``DUPLICATE_IOU_THRESH`` (read, never used) and ``DURATION_THRESH``
    (never read))."""

    valid_score_thresh: float = Field(0.05, ge=0, le=1, description="detections scoring above it are tracked")
    sparse_nms_thresh: float = Field(0.5, gt=0, le=1, description="NMS IoU of the tracked detections")
    kalman_iou_thresh: float = Field(
        0.5, gt=-1.5, le=1, description="a detection continues a track if their complete IoU is above it"
    )
    new_score_thresh: float = Field(0.2, ge=0, le=1, description="an unmatched detection above it starts a track")
    track_buffer_size: int = Field(
        20, ge=0, description="a lost track is dropped once it has gone unmatched more frames than this"
    )


class DETRConfig(_Section):
    """Set-prediction detectors (``meta_architecture: detr``, ``deformable_detr`` and the video
    DETRs ``transvod``, ``cva_net``, ``ptseformer``): the transformer's sizes and the test rules. Defaults are the original's DeformDETR row (baselines
    spec 3.1); the DETR row uses the same sizes (seed spec 1)."""

    d_model: int = Field(256, ge=8, description="transformer width (HIDDEN_DIM)")
    num_heads: int = Field(8, ge=1)
    encoder_layers: int = Field(2, ge=0)
    decoder_layers: int = Field(4, ge=1)
    dim_feedforward: int = Field(512, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    num_queries: int = Field(16, ge=1)
    num_points: int = Field(4, ge=1, description="deformable attention sampling points per head and level")
    box_refine: bool = Field(True, description="deformable_detr: iterative box refinement across decoder layers")
    nms_thresh_test: float | None = Field(
        0.7, gt=0, le=1, description="class-wise NMS of the queries' boxes at test; None: none (plain DETR)"
    )
    detections_per_image: int = Field(16, ge=1)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "DETRConfig":
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of num_heads ({self.num_heads})")
        return self


class SetCriterionConfig(_Section):
    """Matching and losses of every set-prediction detector. ``class_loss``: ``focal``
    (Deformable DETR, baselines spec 3.1), ``softmax`` (DETR's cross-entropy with a down-weighted
    "no object" class, seed spec 1) or ``ia_bce`` (AlignDETR's IoU-aware BCE with many-to-one
    matching, seed spec 2). Weights are (class, L1, GIoU)."""

    class_loss: Literal["focal", "softmax", "ia_bce"] = "focal"
    matcher_weights: tuple[float, float, float] = Field((2.0, 5.0, 2.0), description="Hungarian cost weights")
    loss_weights: tuple[float, float, float] = (2.0, 5.0, 2.0)
    focal_alpha: float = Field(0.25, ge=0, le=1, description="focal loss/cost alpha; ia_bce: the quality exponent")
    focal_gamma: float = Field(2.0, ge=0)
    eos_coef: float = Field(0.1, gt=0, le=1, description="softmax: weight of the no-object class")
    match_num: tuple[int, ...] = Field(
        (1,), min_length=1, description="queries matched per GT box, per decoder layer (one value: every layer)"
    )
    tau: float = Field(1.5, gt=0, description="ia_bce: prime-sample weight exp(-rank / tau)")


class TransVODConfig(_Section):
    """TransVOD's temporal stages on top of ``model.detr``'s Deformable DETR (baselines spec 3.2);
    their layers take ``model.detr``'s width, heads, FFN size, dropout and sampling points."""

    query_encoder_layers: int = Field(
        2, ge=1, description="temporal query encoder layers (query self-attention, slot-wise attention across frames, FFN)"
    )
    temporal_decoder_layers: int = Field(
        1, ge=1, description="deformable decoder layers on the temporal query encoder's output, each frame into its own memory"
    )


class CVANetConfig(_Section):
    """CVA-Net's test-time pairing (``meta_architecture: cva_net``, baselines spec 3.3): each frame
    is fused with the frame ``partner_offset`` before it (clamped to the oldest buffered frame).
    Its training pairs come from the memory sampler (``sampler.name: memory``)."""

    partner_offset: int = Field(
        8, ge=1, description="test: frame t is fused with frame t - partner_offset, or the oldest "
        "frame of its window if that is later (the original: 8, in a FIFO of 16)"
    )


class PTSEFormerConfig(_Section):
    """PTSEFormer's progressive per-pixel attention (``meta_architecture: ptseformer``, baselines
    spec 3.4). The original fixes the blocks' sizes (256-d, 8 heads, FFN 2048, dropout 0.1); their
    width here is ``model.detr.d_model`` (256 there too), the rest are these keys."""

    num_heads: int = Field(8, ge=1, description="heads of every progressive block's attention")
    dim_feedforward: int = Field(2048, ge=1, description="FFN width of every progressive block")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout of every progressive block")
    num_blocks: int = Field(2, ge=1, description="blocks per module (STAM, TFAM, correlation, gated correlation)")
    stam_last_frame_only: bool = Field(
        False,
        description="the original's behaviour: only the window's last frame's STAM output is the correlation's "
        "reference (spec 3.4 Bug); false: every frame's",
    )
    recompute_window: bool = Field(
        False,
        description="test: recompute STAM/TFAM/correlations and the decoder for every frame of the window at "
        "every frame, as the original (same detections, slower); false: only the answered frame's",
    )


# -------------------------------------------------------------------------------------------- model
class ModelConfig(_Section):
    meta_architecture: Literal[
        "temporal_rcnn", "fgfa", "one_stage", "track_one_stage", "detr", "deformable_detr",
        "transvod", "cva_net", "ptseformer",
    ] = Field(
        "temporal_rcnn",
        description="temporal_rcnn: two-stage detector with an RoI head; fgfa: the same on FGFA-aggregated "
        "maps; one_stage: a dense head's detections (DeFCN, RetinaNet, FCOS, YOLOX); track_one_stage: "
        "the same followed by a tracker (Track-YOLO); detr, deformable_detr: set prediction by a "
        "transformer's queries (DETR, DeformDETR); transvod: Deformable DETR per frame, then a temporal "
        "query encoder and decoder over the clip or test window (TransVOD); cva_net: Deformable DETR on "
        "the channel-pair fusion of a frame's map with an earlier frame's (CVA-Net); ptseformer: "
        "Deformable DETR with PTSEFormer's progressive per-pixel attention across frames between "
        "encoder and decoder",
    )
    backbone: BackboneConfig = BackboneConfig()
    proposal_generator: ProposalGeneratorConfig = ProposalGeneratorConfig()
    rpn: RPNConfig = RPNConfig()
    poto: POTOConfig = POTOConfig()
    roi_heads: ROIHeadsConfig = ROIHeadsConfig()
    temporal: TemporalConfig = TemporalConfig()
    relation: RelationConfig = RelationConfig()
    ntca: NTCAConfig = NTCAConfig()
    mega: MEGAConfig = MEGAConfig()
    selsa: SELSAConfig = SELSAConfig()
    flow: FlowConfig = FlowConfig()
    fgfa: FGFAConfig = FGFAConfig()
    dense_head: DenseHeadConfig = DenseHeadConfig()
    retinanet: RetinaNetConfig = RetinaNetConfig()
    fcos: FCOSConfig = FCOSConfig()
    yolox: YOLOXConfig = YOLOXConfig()
    tracker: TrackerConfig = TrackerConfig()
    detr: DETRConfig = DETRConfig()
    set_criterion: SetCriterionConfig = SetCriterionConfig()
    weights: str | None = Field(
        None,
        description="initial weights of the whole detector (detectron2's MODEL.WEIGHTS): a checkpoint path; "
        "tensors matched by name and shape, the rest keep their initialisation; loaded after backbone.weights",
    )
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    transvod: TransVODConfig = TransVODConfig()
    cva_net: CVANetConfig = CVANetConfig()
    ptseformer: PTSEFormerConfig = PTSEFormerConfig()

    @model_validator(mode="after")
    def _pretrained_when_frozen(self) -> "ModelConfig":
        b = self.backbone
        if b.weights is None and self.weights is None and (b.norm == "frozen_bn" or b.freeze_at > 0):
            raise ValueError(
                f"norm={b.norm!r} with freeze_at={b.freeze_at} and no weights would freeze a randomly "
                "initialised stem/BatchNorm (FrozenBN of random init is the identity); set "
                "model.backbone.weights (or model.weights), or use norm: bn and freeze_at: 0 to train from scratch"
            )
        return self

    @model_validator(mode="after")
    def _match_num_per_decoder_layer(self) -> "ModelConfig":
        layers, match_num = self.detr.decoder_layers, self.set_criterion.match_num
        if len(match_num) not in (1, layers):
            raise ValueError(
                f"model.set_criterion.match_num has {len(match_num)} values; give one (every layer) or one "
                f"per decoder layer (model.detr.decoder_layers = {layers})"
            )
        return self

    @model_validator(mode="after")
    def _ptseformer_heads_divide_width(self) -> "ModelConfig":
        if self.meta_architecture == "ptseformer" and self.detr.d_model % self.ptseformer.num_heads:
            raise ValueError(
                f"model.detr.d_model ({self.detr.d_model}) must be a multiple of model.ptseformer.num_heads "
                f"({self.ptseformer.num_heads})"
            )
        return self


# ------------------------------------------------------------------------------------------- solver
class SolverConfig(_Section):
    """AdamW + linear warm-up + step decay (spec section 2). Iterations, not epochs."""

    base_lr: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = Field(
        1e-4,
        ge=0,
        description="AdamW weight decay on every trainable parameter (no norm/bias exemption). The "
        "original's value depends on the version: 1e-4 (detectron2's default) in the 2023 release the "
        "paper's numbers come from, 0.05 at its HEAD, where the DeFCN config hook sets it for every model",
    )
    max_iter: int = Field(10_000, ge=1)
    steps: tuple[int, ...] = (6000, 8000)
    gamma: float = Field(0.1, gt=0)
    warmup_iters: int = Field(1000, ge=0)
    warmup_factor: float = Field(0.001, gt=0, le=1)
    clip_value: float | None = Field(None, gt=0, description="gradient value clipping; None = off")
    clip_norm: float | None = Field(
        None, gt=0, description="gradient norm clipping over all parameters (DETR's max_norm); None = off"
    )
    lr_multipliers: dict[str, float] = Field(
        {},
        description="lr factor of every parameter whose name contains the key (the original's substring "
        "test, e.g. backbone, reference_points, sampling_offsets: 0.1 for the DETR family); first match wins",
    )
    clips_per_batch: int = Field(
        1, ge=1,
        description="global batch: clips per optimizer step, over all data-parallel workers and "
        "accumulation steps (the original's SEGS_PER_BATCH = 8, set by the paper profile); the loss "
        "is the mean over these clips, so base_lr, warm-up and schedule mean the same for any split",
    )
    clips_per_worker: int = Field(
        1, ge=1,
        description="clips one data-parallel worker puts through the model per forward/backward "
        "(the original: 1 clip per GPU); clips_per_batch = workers x clips_per_worker x accumulation steps",
    )
    checkpoint_period: int = Field(1000, ge=1)
    amp: bool = Field(False, description="mixed precision; only takes effect on CUDA")

    @model_validator(mode="after")
    def _whole_micro_batches(self) -> "SolverConfig":
        if self.clips_per_batch % self.clips_per_worker:
            raise ValueError(
                f"clips_per_batch ({self.clips_per_batch}) must be a multiple of clips_per_worker "
                f"({self.clips_per_worker})"
            )
        return self

    def accumulation_steps(self, num_workers: int) -> int:
        """Gradient-accumulation steps per optimizer step with ``num_workers`` data-parallel
        workers: ``clips_per_batch / (num_workers * clips_per_worker)``.

        Raises:
            ConfigError: ``clips_per_batch`` is not a multiple of ``num_workers * clips_per_worker``.
        """
        per_step = num_workers * self.clips_per_worker
        if num_workers < 1 or self.clips_per_batch % per_step:
            raise ConfigError(
                f"solver.clips_per_batch ({self.clips_per_batch}) must be a multiple of train.num_workers "
                f"({num_workers}) x solver.clips_per_worker ({self.clips_per_worker}) = {per_step}"
            )
        return self.clips_per_batch // per_step


class ExperimentConfig(_Section):
    """The whole tree. ``name`` identifies the model row in reports and MLflow."""

    name: str = "ultradet"
    display_name: str = "UltraDet"
    group: Literal["One-stage", "DETR-based", "Faster R-CNN-based"] = "Faster R-CNN-based"
    type: Literal["Image", "Video"] = "Video"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    dataloader_workers: int = Field(0, ge=0)  # DataLoader processes (params.yaml train.num_workers: DDP workers)
    input: InputConfig = InputConfig()
    sampler: SamplerConfig = SamplerConfig()
    model: ModelConfig = ModelConfig()
    solver: SolverConfig = SolverConfig()

    @property
    def flow_estimator(self) -> str | None:
        """The optical flow estimator this model runs (``model.flow.estimator``), or
        None when it has no NTCA head (MLflow tag ``ultradet.flow``, report note)."""
        uses_flow = self.model.meta_architecture == "temporal_rcnn" and self.model.roi_heads.name == "ntca"
        return self.model.flow.estimator if uses_flow else None

    @model_validator(mode="after")
    def _mega_memory_is_the_samplers(self) -> "ExperimentConfig":
        # MEGA's head takes the first model.mega.memory_frames frames of a training clip as its
        # memory: with the memory sampler they must be exactly the sampled memory frames.
        sampler, model = self.sampler, self.model
        mega = model.meta_architecture == "temporal_rcnn" and model.roi_heads.name == "mega"
        if mega and sampler.name == "memory" and sampler.memory_frames != model.mega.memory_frames:
            raise ValueError(
                f"sampler.memory_frames ({sampler.memory_frames}) must equal model.mega.memory_frames "
                f"({model.mega.memory_frames}): MEGA's head takes that many leading clip frames as its memory"
            )
        return self

    @model_validator(mode="after")
    def _cva_net_pairs_memory_and_local_frames(self) -> "ExperimentConfig":
        # CVA-Net fuses the i-th memory frame of a training clip with its i-th local frame (the
        # original asserts equal counts, baselines spec 3.3).
        sampler = self.sampler
        if self.model.meta_architecture == "cva_net" and (
            sampler.name != "memory" or sampler.memory_frames != sampler.num_out_frames
        ):
            raise ValueError(
                f"cva_net trains on pairs of memory and local frames: it needs sampler.name: memory (got "
                f"{sampler.name!r}) with sampler.memory_frames ({sampler.memory_frames}) equal to "
                f"sampler.num_out_frames ({sampler.num_out_frames}); memory_frames: null follows num_out_frames"
            )
        return self


# --------------------------------------------------------------------------------------- loading
def _deep_merge(base: dict, update: Mapping) -> dict:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key] = _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _valid_keys(model: type[BaseModel], path: Sequence[str | int]) -> list[str]:
    """The field names valid at ``path`` (for error messages)."""
    for part in path:
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for item in err.errors():
        loc = [p for p in item["loc"]]
        key = ".".join(str(p) for p in loc)
        if item["type"] == "extra_forbidden":
            valid = ", ".join(_valid_keys(ExperimentConfig, loc[:-1]))
            lines.append(f"  unknown key '{key}'; valid keys here: {valid}")
        else:
            lines.append(f"  {key}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value`` (value in YAML syntax) into (["a","b","c"], value).

    Raises:
        ConfigError: if ``item`` has no ``=`` or an empty key.
    """
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{item}' is not of the form key.path=value")
    return key.strip().split("."), yaml.safe_load(raw)


def overrides_to_dict(overrides: Sequence[str] | Mapping[str, Any]) -> dict:
    """Turn dotted overrides (``["a.b=1"]`` or ``{"a.b": 1}``) into a nested dict."""
    items = overrides.items() if isinstance(overrides, Mapping) else map(parse_override, overrides)
    nested: dict = {}
    for key, value in items:
        parts = key.split(".") if isinstance(key, str) else key
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping. Raises ConfigError naming the file when it is missing or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(
    *files: str | Path, overrides: Sequence[str] | Mapping[str, Any] = ()
) -> ExperimentConfig:
    """Build a validated :class:`ExperimentConfig`.

    Args:
        files: experiment YAML files merged left to right over the defaults. A file may name a
            ``_base_`` file (path relative to itself) that is merged first. A file's
            ``profiles`` section is not applied here (see :func:`load_experiment`).
        overrides: dotted ``key.path=value`` strings or a ``{"key.path": value}`` mapping, applied last.

    Raises:
        ConfigError: a file is missing or not a mapping, an override is malformed, a key is
            unknown (the message lists the valid keys) or a value has the wrong type or range;
            the message names the first layer (file, or the overrides) that made it invalid.
    """
    layers = [(str(file), _split_profiles(Path(file))[0]) for file in files]
    return _merge_layers(layers, overrides)


def _merge_layers(layers: list[tuple[str, dict]], overrides: Sequence[str] | Mapping[str, Any]) -> ExperimentConfig:
    """Merge ``(source, tree)`` layers and then the overrides over the defaults, validating
    after each layer: a later one must not mask an earlier error."""
    override_tree = overrides_to_dict(overrides)
    if override_tree:
        layers = layers + [(f"overrides {', '.join(flatten(override_tree))}", override_tree)]
    merged: dict = {}
    config = ExperimentConfig()
    for source, layer in layers:
        merged = _deep_merge(merged, layer)
        try:
            config = ExperimentConfig.model_validate(merged)
        except ValidationError as err:
            raise ConfigError(_format_validation_error(err, source)) from None
    return config


def _split_profiles(path: Path) -> tuple[dict, dict[str, dict]]:
    """An experiment file's tree without its ``profiles`` section, and that section
    (profile name -> what the model changes under that profile).

    Raises:
        ConfigError: ``profiles`` is not a mapping of mappings.
    """
    data = _read_with_base(path)
    profiles = data.pop("profiles", None) or {}
    if not isinstance(profiles, dict) or not all(isinstance(v, dict) for v in profiles.values()):
        raise ConfigError(f"{path}: profiles must map a profile name to config keys, e.g. profiles: {{cpu: {{solver: ...}}}}")
    return data, profiles


def _read_with_base(path: Path) -> dict:
    data = read_yaml(path)
    base = data.pop("_base_", None)
    if base is None:
        return data
    return _deep_merge(_read_with_base(path.parent / base), data)


def flatten(config: BaseModel | Mapping, prefix: str = "") -> dict[str, Any]:
    """Flatten a config into ``{"model.temporal.interval_pre_test": 15, ...}`` (MLflow params)."""
    data = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def dump_config(config: ExperimentConfig, path: str | Path) -> None:
    """Write the fully resolved config as YAML (tuples as lists)."""
    Path(path).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


def load_experiment(
    name: str,
    *,
    experiments_dir: str | Path = "experiments",
    profile: str | Path | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> ExperimentConfig:
    """Load ``<experiments_dir>/<name>.yaml``, then a profile file (e.g. the CPU profile of
    ``params.yaml``), then what the experiment file's ``profiles.<profile name>`` section
    changes under that profile (the profile name is the file's stem, e.g. ``cpu``), then dotted
    overrides.

    A profile sets a budget for every model (e.g. the CPU profile's short fine-tuning from the
    pretrained detector); ``profiles`` is where one model states, next to its definition, what
    it needs differently under that budget (e.g. a one-stage model whose dense head starts from
    scratch trains longer).

    Raises:
        ConfigError: the experiment or profile is missing or invalid, or ``profiles`` names a
            profile that is not a file beside the profile in use; the message lists the
            available experiments when ``name`` is unknown.
    """
    path = Path(experiments_dir) / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in Path(experiments_dir).glob("*.yaml"))
        raise ConfigError(f"no experiment '{name}' ({path} missing); available: {', '.join(available)}")
    tree, profiles = _split_profiles(path)
    layers = [(str(path), tree)]
    if profile:
        profile = Path(profile)
        # A typo must not silently drop a model's section: every name must be a profile beside the one in use.
        known = {p.stem for p in profile.parent.glob("*.yaml")}
        unknown = sorted(set(profiles) - known)
        if unknown:
            raise ConfigError(f"{path}: profiles names {unknown}, not a profile in {profile.parent} ({', '.join(sorted(known))})")
        layers.append((str(profile), _split_profiles(profile)[0]))
        if profile.stem in profiles:
            layers.append((f"{path} profiles.{profile.stem}", profiles[profile.stem]))
    return _merge_layers(layers, overrides)
