"""Infer which edit requests share a relation, for benchmarks that carry no relation id.

The MEND-layout CounterFact keeps only prompts. A prompt with its subject cut out is a
template ("The mother tongue of {} is"), and a relation usually has several templates. Every
record's neighbourhood (locality) prompt asks the *same relation* about another subject, so
matching it against the known templates links the record's template to another template of
its relation; the linked templates, closed under union-find, are the inferred relations.

The grouping errs towards merging: relations that share a template ("{}, the" is used for
instruments, sports and positions) end up as one. For same-subject sets that is the safe
side, since two facts of one relation about one name would contradict each other. Linking
can only use templates seen among the requests, so infer from every split at hand (for
CounterFact, train + test: from test alone one relation stays split in four pieces).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Mapping, Sequence

from data.requests import EditRequest

SLOT = "{}"


@dataclass(frozen=True)
class RelationIndex:
    """The inferred relation of every template; a relation is named by its smallest template."""

    relation_of_template: Mapping[str, str]

    @property
    def relation_names(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.relation_of_template.values())))

    def relation_of(self, request: EditRequest) -> str:
        """Relation of a request; a template never seen in inference is a relation of its own."""
        template = prompt_template(request)
        return self.relation_of_template.get(template, template)


def prompt_template(request: EditRequest) -> str:
    """The prompt with its subject replaced by "{}" (the prompt itself when there is no subject)."""
    if request.subject is None or request.subject not in request.prompt:
        return request.prompt
    prefix, _, suffix = request.prompt.partition(request.subject)
    return prefix + SLOT + suffix


def infer_relations(requests: Sequence[EditRequest], link_group: str = "default") -> RelationIndex:
    """Group the requests' templates into relations, linked through `link_group` probes."""
    templates = {prompt_template(request) for request in requests if request.subject is not None}
    parent = {template: template for template in templates}

    def root(template: str) -> str:
        while parent[template] != template:
            parent[template] = parent[parent[template]]  # path halving keeps trees shallow
            template = parent[template]
        return template

    matcher = _TemplateMatcher(templates)
    for request in requests:
        if request.subject is None:
            continue
        own = root(prompt_template(request))
        for probe in request.locality.get(link_group, ()):
            for template in matcher.most_specific_matches(probe.prompt):
                parent[root(template)] = own

    members = defaultdict(list)
    for template in templates:
        members[root(template)].append(template)
    return RelationIndex({
        template: min(group) for group in members.values() for template in group
    })


class _TemplateMatcher:
    """Finds the templates a prompt is an instance of, i.e. prefix + some subject + suffix."""

    def __init__(self, templates: set[str]):
        # prefix -> suffix -> template: a prompt is then matched with one look-up per cut
        # position of each known prefix it starts with, instead of testing every template.
        self._by_prefix: dict[str, dict[str, str]] = defaultdict(dict)
        for template in templates:
            if template.count(SLOT) == 1:  # else no slot, or a subject that occurred twice
                prefix, suffix = template.split(SLOT)
                self._by_prefix[prefix][suffix] = template

    def most_specific_matches(self, prompt: str) -> list[str]:
        """Matching templates with the most literal text.

        "The headquarter of X is in" matches both "The headquarter of {} is in" and "{} is in";
        the longer template is the one the prompt was made from (subjects rarely contain
        template words), so only it is linked.
        """
        best_length, best = -1, []
        for start in range(len(prompt)):
            by_suffix = self._by_prefix.get(prompt[:start])
            if by_suffix is None:
                continue
            for end in range(start + 1, len(prompt) + 1):  # the subject is never empty
                template = by_suffix.get(prompt[end:])
                if template is None:
                    continue
                literal_length = start + len(prompt) - end
                if literal_length > best_length:
                    best_length, best = literal_length, [template]
                elif literal_length == best_length:
                    best.append(template)
        return best
