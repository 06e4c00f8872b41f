"""Face embedding networks: IR-ResNet-18/50, a small CPU network, and the Residual Balancing Module."""

from dbrepro.models.face_model import BACKBONES, FaceModel, build_backbone, build_model, normalize_images
from dbrepro.models.iresnet import IResNet, iresnet18, iresnet50
from dbrepro.models.rbm import ResidualBalancingModule, rbm_gate_loss
from dbrepro.models.small import SmallFaceNet

__all__ = [
    "BACKBONES",
    "FaceModel",
    "IResNet",
    "ResidualBalancingModule",
    "SmallFaceNet",
    "build_backbone",
    "build_model",
    "iresnet18",
    "iresnet50",
    "normalize_images",
    "rbm_gate_loss",
]
