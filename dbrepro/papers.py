"""The papers' own numbers: every hyperparameter the book takes from a publication, with its source.

This module is the one home of these values. Class defaults (heads, losses, :class:`~dbrepro.train.TrainConfig`,
:class:`~dbrepro.train.DFIConfig`) refer to them, the ``paper`` profile uses them as they are, and the ``cpu``
and ``smoke`` profiles (:mod:`dbrepro.config`) state their departures beside them. Results the papers report
(their tables) live in the chapters that compare with them.

RL = Zhang et al., Range Loss, ICCV 2017; DB = Cao et al., Domain Balancing, CVPR 2020.
"""

from __future__ import annotations

# -- the training recipe (DB §4.2; Range Loss states no schedule, the book trains both papers with this one) -
#: input crops after five-point alignment, and the embedding size of the face ResNets
IMAGE_SIZE = 112
EMBEDDING_SIZE = 512
#: SGD, momentum 0.9, weight decay 5e-4, lr 0.1 divided by 10 at epochs 5, 8 and 11, 15 epochs in all
LR = 0.1
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
EPOCHS = 15
MILESTONES = (5, 8, 11)
#: images per step (RL §3.5: 256 = 16 identities x 16 images; DB states none, the book uses the same)
BATCH_SIZE = 256

# -- margin heads ---------------------------------------------------------------------------------------------
#: CosFace (Wang et al., CVPR 2018, Eq. 4): s = 64, m = 0.35 (DB trains CosFace and builds DBM on it, §3.3,
#: without restating them)
COSFACE_S = 64.0
COSFACE_M = 0.35
#: ArcFace (Deng et al., CVPR 2019, Eq. 3): s = 64, m = 0.5
ARCFACE_S = 64.0
ARCFACE_M = 0.5
#: SphereFace (Liu et al., CVPR 2017): angular margin m = 4 and the authors' lambda annealing
#: lambda = max(LAMBDA_MIN, BASE * (1 + GAMMA * iteration) ** -POWER) (their Caffe release)
SPHEREFACE_M = 4
SPHEREFACE_BASE = 1000.0
SPHEREFACE_GAMMA = 0.12
SPHEREFACE_POWER = 1.0
SPHEREFACE_LAMBDA_MIN = 5.0

# -- Domain Balancing (DB §4.2, Table 3) -----------------------------------------------------------------------
#: K nearest prototypes of the DFI (Eq. 1): 100 of CASIA-WebFace's 10,575 classes, about 1 %
DB_K = 100
#: eps of Eq. 2, DFI = eps / IC
DB_EPS = 5.5
#: lambda of Eq. 6, the weight of the RBM gate regression (Eq. 4)
DB_LAMBDA = 0.01

# -- Range Loss (RL §3.4-3.5) ------------------------------------------------------------------------------------
#: k largest intra-class distances of Eq. 3
RANGE_K = 2
#: weights of the intra- and inter-class parts (softmax has weight 1): alpha and beta of Eq. 2
RANGE_INTRA_WEIGHT = 5e-5
RANGE_INTER_WEIGHT = 1e-4
#: identity-balanced batches: P identities x K images
RANGE_PK = (16, 16)
#: RL §3.1: an identity with fewer than 20 images is in the tail (the A splits remove tail identities)
TAIL_BELOW = 20
#: RL §3.1: B-0 is 4,000 identities drawn at random from the training set
B0_IDENTITIES = 4_000

# -- comparison losses as the papers use them --------------------------------------------------------------------
#: center loss (Wen et al., ECCV 2016): weight 0.003, centre learning rate alpha 0.5
CENTER_WEIGHT = 0.003
CENTER_ALPHA = 0.5

# -- the training sets the papers use ------------------------------------------------------------------------------
#: CASIA-WebFace (DB Tables 2-3, RL): identities and images
CASIA_CLASSES = 10_575
CASIA_IMAGES = 494_414
#: MS1MV2 (DB Tables 4-7, Fig. 7): identities and images
MS1MV2_CLASSES = 85_742
MS1MV2_IMAGES = 5_822_653
