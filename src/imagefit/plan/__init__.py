"""Every decision made before training: from scratch or from ImageNet weights (`start`), the budget plan
(`budget`, pure, over speeds that `probe` measures) and the transfer plan (`transfer`)."""
