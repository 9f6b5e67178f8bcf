"""Data whose condition y is a multi-hot attribute vector (:mod:`cvaezoo.attributes` has its grouping):
the generated shapes (:mod:`cvaezoo.data.shapes`) and CelebA-style folders (:mod:`cvaezoo.data.celeba`).

``attribute_groups`` and ``attribute_names`` describe the layout to models, the reference attribute
classifier and the scoring of generated samples.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cvaezoo.attributes import group_slices
from cvaezoo.data.base import TensorDataModule
from cvaezoo.errors import UserError


class AttributeData(TensorDataModule):
    """Base for data whose y is a multi-hot attribute vector."""

    y_kind = "multihot"
    attribute_names: list[str]  # one per bit of y
    attribute_groups: list[int]  # sizes of consecutive groups of bits
    group_names: list[str]  # one per group

    def attribute_vector(self, text: str) -> Tensor:
        """Parse "name,name,..." (the attributes that are on) into a 0/1 vector, checking every group."""
        self.setup()
        wanted = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in self.attribute_names]
        if unknown:
            raise UserError(f"unknown attributes {unknown}; known: {self.attribute_names}")
        vector = torch.zeros(len(self.attribute_names))
        vector[[self.attribute_names.index(name) for name in wanted]] = 1.0
        for name, part in zip(self.group_names, group_slices(self.attribute_groups)):
            if part.stop - part.start > 1 and vector[part].sum() != 1:
                options = self.attribute_names[part]
                raise UserError(f"{text!r} must set exactly one of {options} (attribute group {name!r})")
        return vector
