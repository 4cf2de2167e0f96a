"""A notebook kernel's start-up file: a name not defined gets a hint, its cell has not run in this kernel.

The most common first error in a lesson: a cell run before the lesson's set-up cell, or after a
kernel restart, which forgets every name (``NameError: name 'lab' is not defined``). ``payments-lab
lab``, Binder's ``start``, Codespaces and the JupyterHub configuration give kernels this file as their
``PYTHONSTARTUP``, which IPython runs in the notebook's namespace at start: it therefore leaves no name
behind. Anywhere else (a terminal's Python or IPython) it does nothing.
"""


def _payments_lab_name_error_hints() -> None:
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    # Notebooks only: a terminal's IPython has no cells above to run.
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return
    import re
    from types import TracebackType
    from typing import Any

    undefined = re.compile(r"name '(\w+)' is not defined")
    made_by_setup = {"lab": "`lab = await open_lab()`", "ex": "`from payments_lab.exercises import ... as ex`"}

    def hint(name: str) -> str:
        setup = (
            f" `{name}` is made by the lesson's set-up cell ({made_by_setup[name]})."
            if name in made_by_setup
            else ""
        )
        return (
            f"If a cell above defines `{name}`, that cell has not run in this kernel (a restarted kernel forgets "
            f"every name).{setup} Run the cells above first: Run ▸ Run All Above Selected Cell."
        )

    def with_hint(  # IPython's custom exception handler
        shell: Any, etype: type[BaseException], value: BaseException, tb: TracebackType | None, tb_offset: int | None = None
    ) -> None:
        found = undefined.fullmatch(str(value))
        if found is not None and not getattr(value, "__notes__", None):
            value.add_note(hint(found[1]))
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)

    shell.set_custom_exc((NameError,), with_hint)


if __name__ == "__main__":
    _payments_lab_name_error_hints()
    del _payments_lab_name_error_hints
