"""MEMIT-Merge ("MEMIT-Merge: Addressing MEMIT's Key-Value Conflicts in Same-Subject Batch
Editing for LLMs", §3.2): requests that share a key share one value.

Requests about the same subject have (nearly) the same key, so MEMIT asks one key to map to
several values and the least-squares solve averages them away. MEMIT-Merge groups them, trains
one δ per group on the sum of the group's losses (each request with its own prompts and target),
and writes one key column per group: the mean of the members' keys, mapped to the shared value.

Grouping "subject" (the paper) merges identical subject strings; "key_distance" (beyond the
paper) merges requests whose context-averaged keys at l* are closer than
`key_distance_threshold` × the batch's mean key norm (single linkage), which also catches
subjects written differently but keyed alike. Shared vectors get their own budget
(`shared_v_num_grad_steps`, `shared_v_lr`, `shared_clamp_norm_factor`): one vector carrying
several facts converges more slowly than a vector per fact.
"""

from __future__ import annotations

import torch

from editors.keys import request_keys
from editors.kv_editor import EditBatch
from editors.memit import MemitEditor
from editors.value_cache import ValueCache, optimise_reusing
from editors.values import ValueOptions, ValueProblem, ValueResult, combine_results
from lm.adapters import ArchAdapter


class MergeEditor(MemitEditor):
    name = "memit_merge"
    merges_shared_keys = True  # its groups: requests with one key share one value

    def groups(self, model, batch: EditBatch) -> list[list[int]]:
        if self.hparams.grouping == "subject":
            return subject_groups(batch)
        keys, _ = request_keys(model, batch.sites, [self.hparams.last_layer])
        return key_distance_groups(keys[self.hparams.last_layer], self.hparams.key_distance_threshold)

    def optimise(self, model, adapter: ArchAdapter, batch: EditBatch, groups,
                 cache: ValueCache | None) -> ValueResult:
        """Singletons with MEMIT's budget (so MEMIT's cached values serve them), merged groups
        with the shared budget; one result."""
        hp = self.hparams
        shared_options = ValueOptions.from_hparams(
            hp, steps=hp.shared_v_num_grad_steps, lr=hp.shared_v_lr, clamp_factor=hp.shared_clamp_norm_factor
        )
        parts = []
        for options, chosen in (
            (self.value_options(), [g for g, members in enumerate(groups) if len(members) == 1]),
            (shared_options, [g for g, members in enumerate(groups) if len(members) > 1]),
        ):
            if chosen:
                problem = ValueProblem(hp.last_layer, batch.sites, batch.essence, batch.targets,
                                       [groups[g] for g in chosen], self.value_sites(adapter))
                result = optimise_reusing(cache, model, problem, options, self.progress)
                parts.append((chosen, result))
        return combine_results(parts, len(groups))

    def describe(self, batch, groups, values, spread) -> dict:
        info = super().describe(batch, groups, values, spread)
        info["group_sizes"] = sorted((len(members) for members in groups), reverse=True)
        return info


def subject_groups(batch: EditBatch) -> list[list[int]]:
    """Requests with the same subject text, in first-seen order (no subject: a group of one)."""
    by_subject: dict[str, list[int]] = {}
    groups: list[list[int]] = []
    for index, request in enumerate(batch.requests):
        if request.subject is None:
            groups.append([index])
        elif request.subject in by_subject:
            by_subject[request.subject].append(index)
        else:
            by_subject[request.subject] = [index]
            groups.append(by_subject[request.subject])
    return groups


def key_distance_groups(keys: torch.Tensor, threshold: float) -> list[list[int]]:
    """Connected components of "distance < threshold × mean key norm" (single linkage)."""
    keys = keys.double()
    close = torch.cdist(keys, keys) < threshold * keys.norm(dim=1).mean()
    parent = list(range(len(keys)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in close.nonzero().tolist():
        parent[root(i)] = root(j)
    components: dict[int, list[int]] = {}
    for index in range(len(keys)):
        components.setdefault(root(index), []).append(index)
    return sorted(components.values(), key=lambda members: members[0])

