"""The mutants of one module's source: where each operator applies, and the source it makes.

Seven operators, each a small, plausible slip:

  compare      a comparison flipped: `<` <-> `<=`, `>` <-> `>=`, `==` <-> `!=`, `is` <-> `is not`,
               `in` <-> `not in`
  constant     an int or float constant plus or minus one
  boolop       `and` <-> `or`
  bool         `True` <-> `False`
  return-none  `return <value>` -> `return None`
  delete       a simple statement replaced by `pass`
  negate       the condition of an `if`, `while`, conditional expression or comprehension negated

A mutant is a span of the source and its replacement; everything outside the span stays
byte for byte, so line numbers, comments and formatting of the rest of the module are kept.

Left alone, because a change there is either invisible at run time (an equivalent mutant, a
survivor that says nothing about the tests) or never runs under the unit tests: docstrings;
type annotations and a module's type aliases (`Mode = Literal[1, 2]`), except the arguments
of calls in them, such as pydantic's `Field(ge=1)`, which validate at run time; decorators
and base classes (`@dataclass(slots=True)` -> `slots=False` changes nothing a test sees);
`if TYPE_CHECKING:` and `if __name__ == "__main__":` blocks; `__all__`; imports; `pass` and
`...`; `del` of plain names (it frees memory, nothing else); and the inside of f-strings
(whose node positions Python 3.11 does not report reliably).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

MODULE_LEVEL = "<module>"

_FLIPPED: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_SYMBOL: dict[type[ast.cmpop], str] = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}
# Simple statements whose removal is a behaviour change a test can see.
_DELETABLE = (
    ast.Expr,
    ast.Assign,
    ast.AugAssign,
    ast.AnnAssign,
    ast.Raise,
    ast.Assert,
    ast.Delete,
    ast.Break,
    ast.Continue,
)


@dataclass(frozen=True, slots=True)
class Mutant:
    """One change to one module: replace the source between `start` and `end` (line, UTF-8
    byte column, as `ast` reports them) by `replacement`."""

    path: str
    function: str
    operator: str
    description: str
    start: tuple[int, int]
    end: tuple[int, int]
    replacement: str

    @property
    def line(self) -> int:
        return self.start[0]


def apply(source: str, mutant: Mutant) -> str:
    """`source` with the mutant's span replaced."""
    data = source.encode()
    offsets = _line_offsets(data)
    begin = offsets[mutant.start[0] - 1] + mutant.start[1]
    end = offsets[mutant.end[0] - 1] + mutant.end[1]
    return (data[:begin] + mutant.replacement.encode() + data[end:]).decode()


def _line_offsets(data: bytes) -> list[int]:
    offsets = [0]
    for line in data.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    return offsets


def mutants_of(source: str, path: str) -> list[Mutant]:
    """Every mutant the operators make of `source`, in source order."""
    finder = _Finder(path)
    finder.visit(ast.parse(source))
    return sorted(finder.found, key=lambda m: (m.start, m.end, m.operator, m.replacement))


class _Finder(ast.NodeVisitor):
    """Walks a module, knowing which function it is in and what to leave alone."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.found: list[Mutant] = []
        self._scope: list[str] = []

    # --- scopes and what is left alone -------------------------------------------------

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._visit_function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._visit_function(node)

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._visit_defaults(node.args)
        self._scope.append(node.name)
        self._visit_body(node.body)
        self._scope.pop()

    def _visit_defaults(self, args: ast.arguments) -> None:
        for default in [*args.defaults, *args.kw_defaults]:
            if default is not None:
                self.visit(default)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._scope.append(node.name)
        self._visit_body(node.body)
        self._scope.pop()

    def visit_Module(self, node: ast.Module) -> None:
        self._visit_body(node.body)

    def _visit_body(self, body: list[ast.stmt]) -> None:
        for index, statement in enumerate(body):
            if index == 0 and _is_docstring(statement):
                continue
            self.visit(statement)

    def visit_If(self, node: ast.If) -> None:
        if _never_runs_under_tests(node.test):
            self._visit_body(node.orelse)
            return
        self._negate(node.test)
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        self._negate(node.test)
        self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self._negate(node.test)
        self.generic_visit(node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        for condition in node.ifs:
            self._negate(condition)
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        return

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        return

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        return

    def visit_arg(self, node: ast.arg) -> None:
        return  # only its annotation is below it

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._delete(node)
        self._visit_call_arguments(node.annotation)
        if node.value is not None:
            self.visit(node.value)

    def _visit_call_arguments(self, type_expression: ast.expr) -> None:
        for node in ast.walk(type_expression):
            if isinstance(node, ast.Call):
                for argument in [*node.args, *(k.value for k in node.keywords)]:
                    self.visit(argument)

    def visit_Assign(self, node: ast.Assign) -> None:
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return
        if not self._scope and _is_type_alias(node.value):
            self._visit_call_arguments(node.value)
            return
        self._delete(node)
        self.generic_visit(node)

    # --- the operators ------------------------------------------------------------------

    def generic_visit(self, node: ast.AST) -> None:
        if isinstance(node, _DELETABLE) and not isinstance(node, ast.Assign | ast.AnnAssign):
            self._delete(node)
        super().generic_visit(node)

    def visit_Return(self, node: ast.Return) -> None:
        if node.value is not None and not _is_none(node.value):
            self._add(node, "return-none", "`return …` -> `return None`", "return None")
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        for index, op in enumerate(node.ops):
            flipped = _FLIPPED[type(op)]()
            ops = [*node.ops[:index], flipped, *node.ops[index + 1 :]]
            mutated = ast.Compare(node.left, ops, node.comparators)
            description = f"`{_SYMBOL[type(op)]}` -> `{_SYMBOL[type(flipped)]}`"
            self._add(node, "compare", description, ast.unparse(mutated))
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        swapped: ast.boolop = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        names = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
        mutated = ast.BoolOp(swapped, node.values)
        replacement = f"({ast.unparse(mutated)})"
        self._add(node, "boolop", f"`{names[0]}` -> `{names[1]}`", replacement)
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool):
            flipped = repr(not value)
            self._add(node, "bool", f"`{value!r}` -> `{flipped}`", flipped)
        elif isinstance(value, int | float):
            for changed in (value + 1, value - 1):
                self._add(node, "constant", f"`{value!r}` -> `{changed!r}`", repr(changed))

    def _negate(self, condition: ast.expr) -> None:
        replacement = f"not ({ast.unparse(condition)})"
        self._add(condition, "negate", "condition negated", replacement)

    def _delete(self, node: ast.stmt) -> None:
        if _keep_statement(node):
            return
        self._add(node, "delete", "statement deleted", "pass")

    def _add(
        self, node: ast.expr | ast.stmt, operator: str, description: str, replacement: str
    ) -> None:
        assert node.end_lineno is not None and node.end_col_offset is not None
        start = (node.lineno, node.col_offset)
        end = (node.end_lineno, node.end_col_offset)
        function = ".".join(self._scope) or MODULE_LEVEL
        self.found.append(
            Mutant(self.path, function, operator, description, start, end, replacement)
        )


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _is_none(expression: ast.expr) -> bool:
    return isinstance(expression, ast.Constant) and expression.value is None


def _keep_statement(node: ast.stmt) -> bool:
    """Statements whose deletion makes no mutant worth running."""
    if isinstance(node, ast.Expr):
        value = node.value
        return isinstance(value, ast.Constant)  # a string used as a comment, or `...`
    if isinstance(node, ast.Delete):
        return all(isinstance(target, ast.Name) for target in node.targets)
    if isinstance(node, ast.AnnAssign):
        return node.value is None
    return False


def _is_type_alias(value: ast.expr) -> bool:
    """`FetchMode = Literal[...]`, `T = TypeVar("T")`: with postponed annotations, changing
    one changes nothing unless it is used at run time (and deleting it then fails the
    import)."""
    if isinstance(value, ast.Subscript):
        return True
    if isinstance(value, ast.Call):
        called = value.func
        name = called.id if isinstance(called, ast.Name) else getattr(called, "attr", "")
        return name in {"TypeVar", "NewType", "ParamSpec"}
    return False


def _never_runs_under_tests(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` and `if __name__ == "__main__":`."""
    if isinstance(test, ast.Name | ast.Attribute):
        name = test.id if isinstance(test, ast.Name) else test.attr
        return name == "TYPE_CHECKING"
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )
