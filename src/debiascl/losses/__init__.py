"""The losses of debiascl: InfoNCE, DCL, HCL, the self-supervised triplet loss and WCL.

Functions take the projections ``z1, z2`` (B, D) of two views and return a scalar; the
nn.Module wrappers hold the hyper-parameters. Formulas: SPEC sections 2-4 and 6.

DCL is the *Debiased* Contrastive Loss of Chuang et al. (NeurIPS 2020), not the *Decoupled*
Contrastive Learning of Yeh et al. (ECCV 2022) that lightly's ``DCLLoss`` implements.
"""

from debiascl.losses.functional import (
    WEIGHT_FORMS,
    dcl_loss,
    hcl_loss,
    info_nce_loss,
    relative_difficulty,
    triplet_loss,
    wcl_loss,
)
from debiascl.losses.modules import (
    DebiasedContrastiveLoss,
    HardNegativeContrastiveLoss,
    InfoNCELoss,
    SelfSupervisedTripletLoss,
    WCLLoss,
)

__all__ = [
    "WEIGHT_FORMS",
    "DebiasedContrastiveLoss",
    "HardNegativeContrastiveLoss",
    "InfoNCELoss",
    "SelfSupervisedTripletLoss",
    "WCLLoss",
    "dcl_loss",
    "hcl_loss",
    "info_nce_loss",
    "relative_difficulty",
    "triplet_loss",
    "wcl_loss",
]
