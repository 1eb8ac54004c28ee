"""An import-linter contract type: no import cycles between the modules of a package.

import-linter's own contracts check layers and forbidden imports between packages; none
fails on two modules that import each other through a chain (`trainer` -> `callbacks.progress`
-> `callbacks.callback` -> `trainer`), which is what makes an import order fragile and a module
impossible to test alone. This contract finds the strongly connected components of the module
graph (grimp's, the one import-linter builds) and prints one shortest cycle of each, every
link with its line number. Declared in tools/lint/importlinter.ini as `acyclic`.
"""

from __future__ import annotations

from collections import deque

import grimp
from importlinter.application import contract_utils, output
from importlinter.application.contract_utils import AlertLevel
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck
from importlinter.domain.helpers import module_expressions_to_modules


class AcyclicModulesContract(Contract):
    """Fails when modules of a container import each other in a cycle.

    Options:
        containers: the packages whose modules (all descendants) must form an acyclic graph.
        ignore_imports: imports left out of the graph first (the temporary exceptions).
        unmatched_ignore_imports_alerting: none, warn or error (default error: an exception that
            no longer matches an import is stale and should be deleted).
    """

    type_name = "acyclic"

    containers = fields.ListField(subfield=fields.ModuleExpressionField())
    ignore_imports = fields.SetField(subfield=fields.ImportExpressionField(), required=False)
    unmatched_ignore_imports_alerting = fields.EnumField(AlertLevel, default=AlertLevel.ERROR)

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        removal = contract_utils.remove_ignored_imports_and_report(
            graph=graph,
            ignore_imports=self.ignore_imports,  # type: ignore[arg-type]
            unmatched_alerting=self.unmatched_ignore_imports_alerting,  # type: ignore[arg-type]
        )
        cycles = []
        for container in module_expressions_to_modules(graph, self.containers):  # type: ignore[arg-type]
            modules = graph.find_descendants(container.name) | {container.name}
            edges = {
                module: sorted(graph.find_modules_directly_imported_by(module) & modules)
                for module in modules
            }
            for component in strongly_connected_components(edges):
                if len(component) > 1 or component[0] in edges[component[0]]:
                    cycles.append(describe_cycle(graph, shortest_cycle(edges, component)))
        return ContractCheck(
            kept=not cycles,
            warnings=list(removal.warnings),
            ignored_import_count=removal.ignored_import_count,
            metadata={"cycles": sorted(cycles)},
        )

    def render_broken_contract(self, check: ContractCheck) -> None:
        for cycle in check.metadata["cycles"]:
            output.print_error("Import cycle:", bold=True)
            output.new_line()
            for link in cycle:
                output.indent_cursor()
                output.print_error(link, bold=False)
            output.new_line()
        output.print_error(
            "Break each cycle: move what both modules need into a module that neither of them "
            "imports back (for a type annotation: a small interface owned by the lower module).",
            bold=False,
        )


def strongly_connected_components(edges: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm without recursion (a module graph can be deeper than the stack)."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = lowlink[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = lowlink[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(edges[successor])))
                    advanced = True
                    break
                if successor in on_stack:
                    lowlink[node] = min(lowlink[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                lowlink[parent] = min(lowlink[parent], lowlink[node])
            if lowlink[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def shortest_cycle(edges: dict[str, list[str]], component: list[str]) -> list[str]:
    """The shortest cycle through the component's first module: [a, b, ..., a]."""
    start = component[0]
    members = set(component)
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in edges[node]:
            if successor not in members:
                continue
            if successor == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if successor not in previous:
                previous[successor] = node
                queue.append(successor)
    raise AssertionError(f"{start} is in a strongly connected component but on no cycle")


def describe_cycle(graph: grimp.ImportGraph, cycle: list[str]) -> list[str]:
    """One line per import of the cycle: `a -> b (l. 22)`."""
    links = []
    for importer, imported in zip(cycle, cycle[1:], strict=False):
        details = graph.get_import_details(importer=importer, imported=imported)
        lines = ", ".join(str(detail["line_number"]) for detail in details)
        links.append(
            f"{importer} -> {imported} (l. {lines})" if lines else f"{importer} -> {imported}"
        )
    return links
