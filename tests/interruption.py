"""A trainer hook that simulates the process being killed (imported by name: pytest puts this
folder on sys.path)."""


class KillAfter:
    """Raises KeyboardInterrupt right after iteration ``at``, as a kill at that point would."""

    def __init__(self, at: int):
        self.at = at

    def after_step(self, iteration, losses, lr):
        if iteration == self.at:
            raise KeyboardInterrupt

    def after_train(self):
        pass
