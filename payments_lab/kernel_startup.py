"""A notebook kernel's start-up file: the first errors a learner meets say what to type instead.

Three, each common in a first notebook with an async API: a cell run before the lesson's set-up
cell, or after a kernel restart, which forgets every name (``NameError: name 'lab' is not
defined``); ``asyncio.run(main())`` copied from a script or one of Temporal's samples, refused on
the notebook's running event loop; ``await`` left out (``lab.pay("5.00")`` shows a coroutine object
and pays nothing). ``payments-lab lab``, Binder's ``start``, Codespaces and the JupyterHub
configuration give kernels this file as their ``PYTHONSTARTUP``, which IPython runs in the
notebook's namespace at start: it therefore leaves no name behind. Anywhere else (a terminal's
Python or IPython) it does nothing. Where no kit launcher started the kernel (a plain ``jupyter lab``,
VS Code), :func:`payments_lab.open_lab` installs the same hints, from the set-up cell on.
"""


def install_hints() -> None:
    """Give the notebook's kernel the hints, unless it has them or exception handlers of its own."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    # Notebooks only: a terminal's IPython has no cells above to run, and no event loop of its own running.
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return
    # Installed already (by this file at start, or by an earlier open_lab), or the learner's own: left as they are.
    if shell.custom_exceptions:
        return
    import re
    from types import CoroutineType, TracebackType
    from typing import Any

    undefined = re.compile(r"name '(\w+)' is not defined")
    made_by_setup = {"lab": "`lab = await open_lab()`", "ex": "`from payments_lab.exercises import ... as ex`"}

    def name_hint(name: str) -> str:
        setup = f" `{name}` is made by the lesson's set-up cell ({made_by_setup[name]})." if name in made_by_setup else ""
        return (
            f"If a cell above defines `{name}`, that cell has not run in this kernel (a restarted kernel forgets "
            f"every name).{setup} Run the cells above first: Run ▸ Run All Above Selected Cell."
        )

    asyncio_run_hint = (
        "In a notebook, await the coroutine instead: `await main()` in place of `asyncio.run(main())` (or of "
        "`loop.run_until_complete(main())`). The notebook's "
        "event loop already runs (the lab's worker polls on it), and a cell may use `await` at its top level."
    )

    def hint(value: BaseException) -> str | None:
        if isinstance(value, NameError) and (found := undefined.fullmatch(str(value))) is not None:
            return name_hint(found[1])
        if isinstance(value, RuntimeError) and any(
            said in str(value) for said in ("cannot be called from a running event loop", "This event loop is already running")
        ):
            return asyncio_run_hint
        return None

    def with_hint(  # IPython's custom exception handler
        shell: Any, etype: type[BaseException], value: BaseException, tb: TracebackType | None, tb_offset: int | None = None
    ) -> None:
        said = hint(value)
        if said is not None and not getattr(value, "__notes__", None):
            value.add_note(said)
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)

    def unawaited(coroutine: Any, printer: Any, cycle: bool) -> None:
        printer.text(
            f"<coroutine object {coroutine.__qualname__}: not run. A coroutine runs only when it is awaited: put `await` "
            "before the call that made it>"
        )

    shell.set_custom_exc((NameError, RuntimeError), with_hint)
    shell.display_formatter.formatters["text/plain"].for_type(CoroutineType, unawaited)


if __name__ == "__main__":
    install_hints()
    del install_hints
