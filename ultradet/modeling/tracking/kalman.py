"""The constant-velocity Kalman filter of one tracked box (baselines spec 2.4, the original's
``ultrasound_vid/utils/track_utils.py``; Kalman, 1960)."""

from __future__ import annotations

import torch

# Per-component standard deviations of the process noise, as fractions of the first box's
# coordinates (the original's 1/20 for positions and 1/160 for velocities).
POSITION_NOISE = 1.0 / 20
VELOCITY_NOISE = 1.0 / 160
INITIAL_COVARIANCE = 10.0
MEASUREMENT_NOISE = 1.0


class BoxKalmanFilter:
    """Kalman filter of one box with state ``(x1, y1, x2, y2, vx1, vy1, vx2, vy2)``: the box
    corners (XYXY, absolute pixels of the original frame) and their velocities in pixels per
    frame; constant-velocity motion with ``dt = 1`` frame; the measurement is the corners.

    As the original (baselines spec 2.4): the initial state is ``(z0, 0)``, the initial
    covariance ``P0 = 10 * I``, the measurement noise ``R = I`` and the process noise
    ``Q = diag((z0_i / 20)^2 for i = 1..4, (z0_i / 160)^2 for i = 1..4)`` with ``z0`` the first
    box's four corner coordinates, component by component (``Q[i, i]`` and ``Q[i + 4, i + 4]``
    scale with ``z0_i``). Oddity of the original, kept: the noise thus grows with a corner's
    distance from the frame's top-left corner rather than with the box's size (the original's
    docstring speaks of a centre/size state, its code filters the corners). Computed in float64
    on the first box's device.

    Args:
        box: ``FloatTensor[4]``, the first box ``z0`` (XYXY pixels).

    Raises:
        ValueError: ``box`` is not 4 finite numbers.
    """

    def __init__(self, box: torch.Tensor):
        first = _measurement(box)
        self.state = torch.cat([first, torch.zeros_like(first)])
        self.covariance = INITIAL_COVARIANCE * torch.eye(8, dtype=first.dtype, device=first.device)
        self.process_noise = torch.diag(torch.cat([first * POSITION_NOISE, first * VELOCITY_NOISE]).square())
        eye = torch.eye(4, dtype=first.dtype, device=first.device)
        # x_t = x_{t-1} + v_{t-1} * dt, v_t = v_{t-1}.
        self.transition = torch.block_diag(eye, eye)
        self.transition[:4, 4:] = eye
        self.observation = torch.cat([eye, torch.zeros_like(eye)], dim=1)
        self.measurement_noise = MEASUREMENT_NOISE * eye

    @property
    def box(self) -> torch.Tensor:
        """``DoubleTensor[4]``: the current estimate of the corners (XYXY pixels)."""
        return self.state[:4]

    def predict(self) -> torch.Tensor:
        """Advance one frame: ``x = F x``, ``P = F P F^T + Q``.

        Returns:
            ``DoubleTensor[4]``, the predicted box (XYXY pixels).
        """
        self.state = self.transition @ self.state
        self.covariance = self.transition @ self.covariance @ self.transition.T + self.process_noise
        return self.box

    def update(self, box: torch.Tensor) -> torch.Tensor:
        """Correct the state with a measured box: ``S = H P H^T + R``, ``K = P H^T S^-1``,
        ``x = x + K (z - H x)``, ``P = P - K H P`` (the original's form).

        Args:
            box: ``FloatTensor[4]``, the measured box ``z`` (XYXY pixels).

        Returns:
            ``DoubleTensor[4]``, the corrected box (XYXY pixels).

        Raises:
            ValueError: ``box`` is not 4 finite numbers.
        """
        measured = _measurement(box).to(self.state.device)
        innovation_covariance = self.observation @ self.covariance @ self.observation.T + self.measurement_noise
        # K = P H^T S^-1, solved rather than inverted; S and P are symmetric, so K^T = S^-1 H P.
        gain = torch.linalg.solve(innovation_covariance, self.observation @ self.covariance).T
        self.state = self.state + gain @ (measured - self.observation @ self.state)
        self.covariance = self.covariance - gain @ self.observation @ self.covariance
        return self.box


def _measurement(box: torch.Tensor) -> torch.Tensor:
    """``box`` as a float64 ``[4]`` vector; ValueError unless it holds 4 finite numbers."""
    if box.numel() != 4 or not torch.isfinite(box).all():
        raise ValueError(f"a Kalman measurement is one XYXY box of 4 finite numbers, got {box.tolist()}")
    return box.detach().reshape(4).to(torch.float64)
