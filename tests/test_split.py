import torch

from imagefit.data.split import stratified_split


def test_stratified_deterministic_and_disjoint():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    kept, carved = stratified_split(labels, 0.1, seed=3)
    kept2, carved2 = stratified_split(labels, 0.1, seed=3)
    assert torch.equal(carved, carved2) and torch.equal(kept, kept2)
    assert set(kept.tolist()).isdisjoint(carved.tolist())
    assert len(kept) + len(carved) == 100
    assert torch.bincount(labels[carved]).tolist() == [5, 3, 2]
    assert not torch.equal(stratified_split(labels, 0.1, seed=4)[1], carved)


def test_small_classes_keep_one_on_each_side():
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    kept, carved = stratified_split(labels, 0.1, seed=0)
    assert sorted(labels[carved].tolist()) == [0, 1]
    assert sorted(labels[kept].tolist()) == [0, 1, 1, 2]
