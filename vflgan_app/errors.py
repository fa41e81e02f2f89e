"""Every exception type of the package, in one place.

Callers branch on these (STYLE rule 19): a federation that cannot start
(:class:`HandshakeError`), a malformed or missing reply (:class:`ReplyError`,
:class:`PartyTimeout`), a request out of protocol order (:class:`ProtocolError`),
a training run stopped by a fault with a resume point (:class:`RunInterrupted`), and a
DP run stopped by its budget (:class:`PrivacyBudgetExceeded`). Bad values in a config
or a table raise the built-in ``ValueError`` / ``TypeError`` naming the field.
"""

from __future__ import annotations


class HandshakeError(ValueError):
    """The parties cannot train together (missing/duplicate parties, misaligned rows)."""


class ReplyError(RuntimeError):
    """A party's reply is malformed (wrong keys, shape, dtype, non-finite values)."""


class PartyTimeout(ReplyError):
    """A party did not reply within the round timeout."""


class ProtocolError(RuntimeError):
    """A request arrived out of order (e.g. gradients for a step never forwarded)."""


class RunInterrupted(RuntimeError):
    """Training stopped on a fault; ``resume_step`` names the checkpoint to resume from."""

    def __init__(self, message: str, resume_step: int | None) -> None:
        super().__init__(message)
        self.resume_step = resume_step


class PrivacyBudgetExceeded(RuntimeError):
    """Raised before a step that would take epsilon above the target."""

    def __init__(
        self,
        *,
        target_epsilon: float,
        current_epsilon: float,
        next_epsilon: float,
        delta: float,
        steps_taken: int,
    ) -> None:
        self.target_epsilon = target_epsilon
        self.current_epsilon = current_epsilon
        self.next_epsilon = next_epsilon
        self.delta = delta
        self.steps_taken = steps_taken
        super().__init__(
            f"privacy budget exhausted: the next step would raise epsilon from "
            f"{current_epsilon:.4f} to {next_epsilon:.4f} (delta={delta:g}), above "
            f"dp.target-epsilon={target_epsilon:g}; stopped before it after "
            f"{steps_taken} noised steps"
        )
